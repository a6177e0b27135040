/*
 * A complete Sora session in plain C through the shim's ABI, no Python involved:
 * connect to SIGNALING_URL in CHANNEL with DataChannel signaling and the "#chat" channel,
 * wait until connected, send one message, print the first message received, disconnect.
 *
 *   cc session.c -I../include -L<dir of libsora_shim.so> -lsora_shim -o session
 *   ./session ws://127.0.0.1:5000/signaling my-channel
 *
 * Exit status 0 when a message went each way and the session closed cleanly.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "sora_shim.h"

static int fail(const char *what) {
    fprintf(stderr, "%s: %s\n", what, sora_last_error());
    return 1;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s SIGNALING_URL CHANNEL_ID\n", argv[0]);
        return 2;
    }
    char config[1024];
    snprintf(config, sizeof config,
             "{\"signaling_urls\":[\"%s\"],\"role\":\"sendrecv\",\"channel_id\":\"%s\","
             "\"audio\":false,\"video\":false,\"data_channel_signaling\":true,"
             "\"data_channels\":[{\"label\":\"#chat\",\"direction\":\"sendrecv\"}]}",
             argv[1], argv[2]);

    SoraEventQueue *queue = NULL;
    SoraConnection *conn = NULL;
    if (sora_event_queue_new(0, &queue) != SORA_OK) return fail("queue");
    if (sora_connection_new(queue, config, &conn) != SORA_OK) return fail("connection");
    if (sora_connection_connect(conn) != SORA_OK) return fail("connect");
    if (sora_connection_wait_connected(conn, 10000) != SORA_OK) return fail("wait_connected");
    printf("connected\n");

    int sent = 0, received = 0, disconnect_code = -1;
    while (disconnect_code < 0) {
        SoraEvent *ev = NULL;
        int r = sora_event_queue_wait(queue, 10000, &ev);
        if (r == 0) {
            fprintf(stderr, "timed out waiting for events\n");
            break;
        }
        if (r < 0) return fail("wait");
        SoraEventView v = {.size = sizeof v};
        sora_event_view(ev, &v);
        switch (v.type) {
        case SORA_EVENT_DATA_CHANNEL:
            if (strcmp(v.text, "#chat") == 0 && !sent) {
                const char *msg = "hello from C";
                if (sora_connection_send_data_channel(conn, "#chat", (const uint8_t *)msg, strlen(msg)) != SORA_OK)
                    return fail("send");
                sent = 1;
                printf("sent: %s\n", msg);
            }
            break;
        case SORA_EVENT_MESSAGE:
            printf("received on %s: %.*s\n", v.text, (int)v.data_len, (const char *)v.data);
            received = 1;
            sora_connection_disconnect(conn);
            break;
        case SORA_EVENT_DISCONNECT:
            disconnect_code = (int)v.a;
            printf("disconnected: code=%d message=%s\n", disconnect_code, v.text);
            break;
        default:
            break;
        }
        sora_event_free(ev);
    }
    sora_connection_destroy(conn);
    sora_event_queue_destroy(queue);
    return (sent && received && disconnect_code == 0) ? 0 : 1;
}
