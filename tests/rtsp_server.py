#!/usr/bin/python3
"""A real RTSP camera on loopback for the tests: GStreamer's RTSP server
streaming one JPEG photo as H.264 (x264, zero latency).

    /usr/bin/python3 tests/rtsp_server.py PHOTO [--width W] [--height H]
        [--fps F] [--port P] [--path /cam] [--user U --password P]
        [--tls-cert CERT.pem --tls-key KEY.pem]

Needs Debian's gir1.2-gst-rtsp-server-1.0, python3-gi and
gstreamer1.0-plugins-{base,good,ugly} (scripts/deps --test), and the system
Python (those bindings are not in a pyenv one). Port 0 picks a free port.
Prints `ready rtsp://127.0.0.1:PORT/PATH` on stdout once it listens
(`rtsps://` with --tls-cert: RTSP over TLS).
"""

import argparse
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import Gio, GLib, Gst, GstRtspServer  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("photo")
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--fps", type=int, default=15)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--path", default="/cam")
    ap.add_argument("--user")
    ap.add_argument("--password")
    ap.add_argument("--tls-cert")
    ap.add_argument("--tls-key")
    a = ap.parse_args()

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(a.port))
    # The photo is frozen into a live stream; a key frame every second so a
    # client that (re)connects gets a picture quickly.
    launch = (
        f'( filesrc location="{a.photo}" ! jpegdec ! imagefreeze is-live=true '
        f"! videoscale ! videoconvert "
        f"! video/x-raw,format=I420,width={a.width},height={a.height},framerate={a.fps}/1 "
        f"! x264enc tune=zerolatency speed-preset=ultrafast key-int-max={a.fps} "
        f"! rtph264pay name=pay0 pt=96 config-interval=1 )"
    )
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(launch)
    factory.set_shared(True)
    if a.user or a.tls_cert:
        auth = GstRtspServer.RTSPAuth()
        token = GstRtspServer.RTSPToken()
        token.set_string(GstRtspServer.RTSP_TOKEN_MEDIA_FACTORY_ROLE, "user")
        if a.user:
            auth.add_basic(GstRtspServer.RTSPAuth.make_basic(a.user, a.password or ""), token)
        else:
            # TLS without a login: everyone gets the user's role.
            auth.set_default_token(token)
        if a.tls_cert:
            auth.set_tls_certificate(Gio.TlsCertificate.new_from_files(a.tls_cert, a.tls_key))
        server.set_auth(auth)
        perms = GstRtspServer.RTSPPermissions()
        perms.add_permission_for_role("user", GstRtspServer.RTSP_PERM_MEDIA_FACTORY_ACCESS, True)
        perms.add_permission_for_role("user", GstRtspServer.RTSP_PERM_MEDIA_FACTORY_CONSTRUCT, True)
        factory.set_permissions(perms)
    server.get_mount_points().add_factory(a.path, factory)
    if server.attach(None) == 0:
        print(f"rtsp server: cannot listen on 127.0.0.1:{a.port}", file=sys.stderr)
        return 1
    scheme = "rtsps" if a.tls_cert else "rtsp"
    print(f"ready {scheme}://127.0.0.1:{server.get_bound_port()}{a.path}", flush=True)
    GLib.MainLoop().run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
