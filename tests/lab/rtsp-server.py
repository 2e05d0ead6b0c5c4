#!/usr/bin/python3
"""A GStreamer RTSP server for the lab (tests/lab/e2e-rtsp.sh): one stream at rtsp://ADDRESS:PORT/test, a test
video (videotestsrc, H.264 if an encoder is installed, else JPEG) and a test tone (audiotestsrc, PCMU), over RTP/UDP
(and interleaved TCP when the client asks). Prints "ready" once it listens; runs until killed.

Usage: rtsp-server.py ADDRESS PORT [UDP_PORT_MIN UDP_PORT_MAX]
"""
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

Gst.init(None)
address, port = sys.argv[1], sys.argv[2]
video = ("videotestsrc is-live=true pattern=ball ! video/x-raw,width=320,height=240,framerate=25/1 ! "
         + ("x264enc tune=zerolatency speed-preset=ultrafast key-int-max=25 ! rtph264pay name=pay0 pt=96"
            if Gst.ElementFactory.find("x264enc") else "jpegenc quality=60 ! rtpjpegpay name=pay0 pt=26"))
audio = "audiotestsrc is-live=true wave=sine ! audio/x-raw,rate=8000,channels=1 ! mulawenc ! rtppcmupay name=pay1 pt=0"

server = GstRtspServer.RTSPServer()
server.set_address(address)
server.set_service(port)
factory = GstRtspServer.RTSPMediaFactory()
factory.set_launch(f"( {video} {audio} )")
factory.set_shared(True)
if len(sys.argv) > 4:
    pool = GstRtspServer.RTSPAddressPool()
    pool.add_range("0.0.0.0" if ":" not in address else "::", "0.0.0.0" if ":" not in address else "::",
                   int(sys.argv[3]), int(sys.argv[4]), 0)
    factory.set_address_pool(pool)
server.get_mount_points().add_factory("/test", factory)
if server.attach(None) == 0:
    sys.exit(f"cannot listen on {address}:{port}")
print("ready", flush=True)
GLib.MainLoop().run()
