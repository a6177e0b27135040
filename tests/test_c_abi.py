"""The shim's C ABI used from plain C (scenario 11): cshim/examples/session.c is compiled
against sora_ffi's libsora_shim.so and run against a DevServer, with a sora_ffi client in
the same channel echoing '#chat' messages back; plus a small C program checking the ABI
contract of docs/c-abi.md (status codes, last error, queue semantics, NULL safety)."""
from __future__ import annotations

import os
import shutil
import subprocess
import textwrap

import pytest

import sora_ffi

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INCLUDE = os.path.join(REPO, "cshim", "include")
SESSION_C = os.path.join(REPO, "cshim", "examples", "session.c")
LIB_DIR = os.path.dirname(os.path.abspath(sora_ffi.__file__))

pytestmark = pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler")


def _compile(src: str, out: str) -> str:
    assert os.path.exists(os.path.join(LIB_DIR, "libsora_shim.so")), LIB_DIR
    cmd = ["cc", "-std=c11", "-Wall", "-Werror", "-o", out, src, "-I", INCLUDE,
           "-L", LIB_DIR, "-lsora_shim", f"-Wl,-rpath,{LIB_DIR}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return out


@pytest.fixture(scope="module")
def session_bin(tmp_path_factory):
    return _compile(SESSION_C, str(tmp_path_factory.mktemp("cabi") / "session"))


def test_session_c_with_echo_peer(session_bin, server, channel_id, clients):
    echo = clients(sora_ffi, server, channel_id, client_id="echo", data_channel_signaling=True,
                   data_channels=[{"label": "#chat", "direction": "sendrecv"}])

    def on_message(args):
        label, data = args
        if label == "#chat":
            echo.conn.send_data_channel("#chat", b"echo: " + data)
    echo.callback_hooks["message"] = on_message
    echo.connect()
    echo.wait_dc("#chat")

    proc = subprocess.run([session_bin, server.signaling_url, channel_id],
                          capture_output=True, text=True, timeout=30)
    out = proc.stdout.splitlines()
    assert proc.returncode == 0, (proc.returncode, proc.stdout, proc.stderr)
    assert out[0] == "connected"
    assert out[1] == "sent: hello from C"
    assert out[2] == "received on #chat: echo: hello from C"
    assert out[3].startswith("disconnected: code=0 message=")
    assert len(out) == 4
    # the echo peer really saw the C client: its message and its arrival and departure
    assert echo.messages == [("#chat", b"hello from C")]
    created = [n for n in echo.notifies
               if n["event_type"] == "connection.created" and n["connection_id"] != echo.connection_id]
    assert len(created) == 1
    c_id = created[0]["connection_id"]
    echo.wait_notify("connection.destroyed", connection_id=c_id)
    assert [x["connection_id"] for x in server.connections(channel_id)] == [echo.connection_id]


CONTRACT_C = textwrap.dedent(r"""
    #include <poll.h>
    #include <stdint.h>
    #include <stdio.h>
    #include <string.h>
    #include <unistd.h>
    #include "sora_shim.h"

    static int failures = 0;
    static SoraEventQueue *q2 = NULL;  /* the encoded-source connection's own events */
    static SoraEventQueue *q2_dummy(void) { if (!q2) sora_event_queue_new(0, &q2); return q2; }
    #define CHECK(cond) do { if (!(cond)) { \
        printf("FAIL line %d: %s (last error: %s)\n", __LINE__, #cond, sora_last_error()); \
        failures++; } } while (0)

    int main(int argc, char **argv) {
        const char *v = sora_version();
        CHECK(v != NULL && strlen(v) > 0);
        CHECK(sora_last_error() != NULL);

        SoraEventQueue *q = NULL;
        CHECK(sora_event_queue_new(0, &q) == SORA_OK && q != NULL);

        /* invalid configs: -1 and a message, nothing created */
        SoraConnection *c = NULL;
        CHECK(sora_connection_new(q, "not json", &c) == SORA_ERR_INVALID_ARGUMENT);
        CHECK(c == NULL && strlen(sora_last_error()) > 0);
        CHECK(sora_connection_new(q, "{\"signaling_urls\":[\"ws://127.0.0.1:1/signaling\"],"
              "\"role\":\"sendrecv\",\"channel_id\":\"c\",\"no_such_key\":1}", &c)
              == SORA_ERR_INVALID_ARGUMENT);
        CHECK(strstr(sora_last_error(), "no_such_key") != NULL);
        CHECK(sora_connection_new(q, "{\"signaling_urls\":[],\"role\":\"sendrecv\","
              "\"channel_id\":\"c\"}", &c) == SORA_ERR_INVALID_ARGUMENT);
        CHECK(sora_connection_new(q, "{\"signaling_urls\":[\"ws://x/\"],\"role\":\"bogus\","
              "\"channel_id\":\"c\"}", &c) == SORA_ERR_INVALID_ARGUMENT);

        /* a valid one against the URL given on the command line */
        char cfg[512];
        snprintf(cfg, sizeof cfg, "{\"signaling_urls\":[\"%s\"],\"role\":\"recvonly\","
                 "\"channel_id\":\"%s\",\"audio\":false,\"video\":false}", argv[1], argv[2]);
        CHECK(sora_connection_new(q, cfg, &c) == SORA_OK && c != NULL);
        uint64_t id = sora_connection_id(c);
        CHECK(id != 0);
        const uint8_t b = 1;
        CHECK(sora_connection_send_data_channel(c, "#x", &b, 1) == SORA_ERR_CLOSED);
        CHECK(sora_connection_wait_connected(c, 10) == SORA_ERR_TIMEOUT);

        /* an empty queue times out */
        SoraEvent *ev = NULL;
        CHECK(sora_event_queue_wait(q, 10, &ev) == 0 && ev == NULL);

        CHECK(sora_connection_connect(c) == SORA_OK);
        CHECK(sora_connection_connect(c) == SORA_ERR_INVALID_STATE);
        CHECK(sora_connection_wait_connected(c, 10000) == SORA_OK);
        char *info = NULL;
        CHECK(sora_connection_info(c, &info) == SORA_OK && info != NULL);
        CHECK(info && strstr(info, "\"connected\":true") != NULL);
        sora_string_free(info);
        char *stats = NULL;
        CHECK(sora_connection_get_stats(c, &stats) == SORA_OK && stats && stats[0] == '[');
        sora_string_free(stats);

        /* events: SET_OFFER ... CONNECTED; then disconnect: DISCONNECT is the last */
        int saw_offer = 0, saw_connected = 0, disconnect_code = -1, after_disconnect = 0;
        CHECK(sora_connection_disconnect(c) == SORA_OK);
        CHECK(sora_connection_disconnect(c) == SORA_OK);  /* repeatable */
        for (;;) {
            int r = sora_event_queue_wait(q, disconnect_code < 0 ? 10000 : 300, &ev);
            if (r != 1) break;
            SoraEventView view;
            memset(&view, 0, sizeof view);
            view.size = sizeof view;
            CHECK(sora_event_view(ev, &view) == SORA_OK);
            CHECK(view.source == id);
            if (disconnect_code >= 0) after_disconnect++;
            if (view.type == SORA_EVENT_SET_OFFER) saw_offer = view.text && strstr(view.text, "\"offer\"") != NULL;
            if (view.type == SORA_EVENT_CONNECTED) saw_connected = view.text && strlen(view.text) == 26;
            if (view.type == SORA_EVENT_DISCONNECT) disconnect_code = (int)view.a;
            sora_event_free(ev);
        }
        CHECK(saw_offer && saw_connected);
        CHECK(disconnect_code == 0);
        CHECK(after_disconnect == 0);
        CHECK(sora_connection_connect(c) == SORA_ERR_INVALID_STATE);

        sora_connection_destroy(c);

        /* closing wakes waiters; closed and drained → SORA_ERR_CLOSED */
        sora_event_queue_close(q);
        CHECK(sora_event_queue_wait(q, 1000, &ev) == SORA_ERR_CLOSED);
        CHECK(sora_event_queue_dropped(q) == 0);
        sora_event_queue_destroy(q);

        /* an encoded video source: bad arguments refused; a connection using it asks its
           queue for a keyframe (SORA_EVENT_KEYFRAME_REQUEST), and the H.265 IDR pushed then
           is taken; a delta given as a keyframe is refused */
        SoraEventQueue *kq = NULL;
        CHECK(sora_event_queue_new(0, &kq) == SORA_OK);
        SoraEncodedVideoSource *src = NULL;
        CHECK(sora_encoded_video_source_new("THEORA", kq, &src) == SORA_ERR_INVALID_ARGUMENT && src == NULL);
        CHECK(sora_encoded_video_source_new("H265", kq, &src) == SORA_OK && src != NULL);
        uint64_t sid = sora_encoded_video_source_id(src);
        CHECK(sid != 0 && sora_encoded_video_source_id(NULL) == 0);
        const uint8_t idr[] = {0, 0, 0, 1, 0x26, 0x01, 0xaf, 0x10, 0x20};   /* IDR_W_RADL */
        const uint8_t delta[] = {0, 0, 0, 1, 0x02, 0x01, 0xd0, 0x10, 0x20}; /* TRAIL_R */
        CHECK(sora_encoded_video_source_push(src, idr, 0, -1, INT64_MIN) == SORA_ERR_INVALID_ARGUMENT);
        CHECK(sora_encoded_video_source_push(src, delta, sizeof delta, 1, INT64_MIN) == SORA_ERR_INVALID_ARGUMENT);
        CHECK(strstr(sora_last_error(), "not a keyframe") != NULL);
        CHECK(sora_encoded_video_source_push(src, idr, sizeof idr, 2, INT64_MIN) == SORA_ERR_INVALID_ARGUMENT);
        snprintf(cfg, sizeof cfg, "{\"signaling_urls\":[\"%s\"],\"role\":\"sendonly\","
                 "\"channel_id\":\"%s-enc\",\"audio\":false,\"video\":true,\"video_source\":%llu}",
                 argv[1], argv[2], (unsigned long long)sid);
        SoraConnection *ec = NULL;
        CHECK(sora_connection_new(q2_dummy(), cfg, &ec) == SORA_OK);
        CHECK(sora_connection_connect(ec) == SORA_OK);
        CHECK(sora_connection_wait_connected(ec, 10000) == SORA_OK);
        int requested = 0;
        while (!requested && sora_event_queue_wait(kq, 5000, &ev) == 1) {
            SoraEventView view;
            memset(&view, 0, sizeof view);
            view.size = sizeof view;
            CHECK(sora_event_view(ev, &view) == SORA_OK);
            requested = view.type == SORA_EVENT_KEYFRAME_REQUEST && view.source == sid;
            sora_event_free(ev);
        }
        CHECK(requested);
        CHECK(sora_encoded_video_source_push(src, idr, sizeof idr, 1, INT64_MIN) == SORA_OK);
        CHECK(sora_encoded_video_source_push(src, delta, sizeof delta, -1, INT64_MIN) == SORA_OK);
        CHECK(sora_encoded_video_source_dropped(src) == 0);
        CHECK(sora_encoded_video_source_keyframe_requests(src) >= 1);
        CHECK(sora_connection_disconnect(ec) == SORA_OK);
        sora_connection_destroy(ec);
        sora_encoded_video_source_destroy(src);
        sora_encoded_video_source_destroy(NULL);
        sora_event_queue_destroy(kq);

        /* an audio source's queue controls: NULL refused; with no sender nothing is queued */
        SoraAudioSource *as = NULL;
        CHECK(sora_audio_source_new(1, 16000, &as) == SORA_OK && as != NULL);
        uint64_t queued = 1, cleared = 1;
        CHECK(sora_audio_source_queued_us(as, &queued) == SORA_OK && queued == 0);
        CHECK(sora_audio_source_queued_us(NULL, &queued) == SORA_ERR_INVALID_ARGUMENT);
        CHECK(sora_audio_source_queued_us(as, NULL) == SORA_ERR_INVALID_ARGUMENT);
        CHECK(sora_audio_source_set_max_queued_us(NULL, 1) == SORA_ERR_INVALID_ARGUMENT);
        CHECK(sora_audio_source_set_max_queued_us(as, 2000000) == SORA_OK);
        CHECK(sora_audio_source_clear(as, &cleared) == SORA_OK && cleared == 0);
        CHECK(sora_audio_source_clear(as, NULL) == SORA_OK);
        sora_audio_source_destroy(as);
        CHECK(sora_audio_stream_sink_set_frame_ms(NULL, 20) == SORA_ERR_INVALID_ARGUMENT);

        /* an event loop's view of a queue: its descriptor becomes readable when events
           wait; read it, then take them with a zero timeout */
        SoraEventQueue *lq = NULL;
        CHECK(sora_event_queue_new(0, &lq) == SORA_OK);
        int32_t fd = -1;
        CHECK(sora_event_queue_notify_fd(NULL, &fd) == SORA_ERR_INVALID_ARGUMENT);
        CHECK(sora_event_queue_notify_fd(lq, NULL) == SORA_ERR_INVALID_ARGUMENT);
        CHECK(sora_event_queue_notify_fd(lq, &fd) == SORA_OK && fd >= 0);
        int32_t fd_again = -1;
        CHECK(sora_event_queue_notify_fd(lq, &fd_again) == SORA_OK && fd_again == fd);
        struct pollfd pfd = { .fd = fd, .events = POLLIN };
        CHECK(poll(&pfd, 1, 50) == 0);  /* nothing waits: not readable */
        snprintf(cfg, sizeof cfg, "{\"signaling_urls\":[\"%s\"],\"role\":\"recvonly\","
                 "\"channel_id\":\"%s-loop\",\"audio\":false,\"video\":false}", argv[1], argv[2]);
        SoraConnection *lc = NULL;
        CHECK(sora_connection_new(lq, cfg, &lc) == SORA_OK);
        CHECK(sora_connection_connect(lc) == SORA_OK);
        /* an event loop's turn: poll, clear the descriptor, take what waits; until CONNECTED */
        int taken = 0, loop_connected = 0;
        for (int turn = 0; turn < 100 && !loop_connected; turn++) {
            if (poll(&pfd, 1, 10000) != 1 || !(pfd.revents & POLLIN)) break;
            char drain[64];
            CHECK(read(fd, drain, sizeof drain) >= 1);
            while (sora_event_queue_wait(lq, 0, &ev) == 1) {
                SoraEventView view;
                memset(&view, 0, sizeof view);
                view.size = sizeof view;
                if (sora_event_view(ev, &view) == SORA_OK && view.type == SORA_EVENT_CONNECTED) loop_connected = 1;
                taken++;
                sora_event_free(ev);
            }
        }
        CHECK(taken >= 2 && loop_connected);
        CHECK(sora_connection_disconnect(lc) == SORA_OK);
        sora_connection_destroy(lc);
        sora_event_queue_destroy(lq);

        /* NULL is ignored by the free/destroy functions */
        sora_connection_destroy(NULL);
        sora_event_queue_destroy(NULL);
        sora_event_free(NULL);
        sora_string_free(NULL);

        printf("%d failures\n", failures);
        return failures ? 1 : 0;
    }
""")


def test_c_abi_contract(tmp_path, server, channel_id):
    src = tmp_path / "contract.c"
    src.write_text(CONTRACT_C)
    binary = _compile(str(src), str(tmp_path / "contract"))
    proc = subprocess.run([binary, server.signaling_url, channel_id], capture_output=True,
                          text=True, timeout=30)
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    assert proc.stdout.strip().endswith("0 failures")
