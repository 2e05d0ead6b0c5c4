/*
 * The baseline consumer for the throughput benchmark: a minimal libnetfilter_queue program that accepts
 * every packet it is given, one recv and one verdict per packet, as a plain C consumer does. Offload's
 * daemon should beat it by batching.
 *
 * Usage: nfq-accept QUEUE [gso]
 */
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <sys/socket.h>
#include <linux/netfilter.h>
#include <libnetfilter_queue/libnetfilter_queue.h>

static volatile sig_atomic_t stopping;

static void on_signal(int sig) { (void)sig; stopping = 1; }

static int on_packet(struct nfq_q_handle *queue, struct nfgenmsg *msg, struct nfq_data *data, void *unused)
{
    (void)msg;
    (void)unused;
    struct nfqnl_msg_packet_hdr *header = nfq_get_msg_packet_hdr(data);
    uint32_t id = header ? ntohl(header->packet_id) : 0;
    return nfq_set_verdict(queue, id, NF_ACCEPT, 0, NULL);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s QUEUE [gso]\n", argv[0]);
        return 2;
    }
    uint16_t queue_number = (uint16_t)atoi(argv[1]);
    int gso = argc > 2 && strcmp(argv[2], "gso") == 0;

    struct nfq_handle *handle = nfq_open();
    if (!handle) { perror("nfq_open"); return 1; }
    struct nfq_q_handle *queue = nfq_create_queue(handle, queue_number, on_packet, NULL);
    if (!queue) { perror("nfq_create_queue"); return 1; }
    if (nfq_set_mode(queue, NFQNL_COPY_PACKET, 0xffff) < 0) { perror("nfq_set_mode"); return 1; }
    nfq_set_queue_maxlen(queue, 4096);
    if (gso && nfq_set_queue_flags(queue, NFQA_CFG_F_GSO, NFQA_CFG_F_GSO) < 0) { perror("gso"); return 1; }

    /* No SA_RESTART: a signal must interrupt recv() so the loop sees `stopping`. */
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = on_signal;
    sigaction(SIGTERM, &action, NULL);
    sigaction(SIGINT, &action, NULL);
    int fd = nfq_fd(handle);
    char buffer[65536 + 4096] __attribute__((aligned));
    unsigned long packets = 0;
    while (!stopping) {
        int n = recv(fd, buffer, sizeof buffer, 0);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == ENOBUFS) continue; /* counted by the kernel in /proc/net/netfilter/nfnetlink_queue */
            perror("recv");
            break;
        }
        nfq_handle_packet(handle, buffer, n);
        packets++;
    }
    fprintf(stderr, "nfq-accept: %lu messages\n", packets);
    nfq_destroy_queue(queue);
    nfq_close(handle);
    return 0;
}
