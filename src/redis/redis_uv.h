/* redis_uv: tickerd's hiredis 0.14 event adapter for libuv.
 *
 * It fills the `ac->ev` hooks of a redisAsyncContext with one uv_poll_t on
 * the context's socket. Unlike hiredis's own adapters/libuv.h it dispatches
 * redisAsyncHandleWrite/Read even when the poll reports an error: a refused
 * or reset connection is then seen by hiredis (connect or disconnect
 * callback) instead of being silently dropped. Commands queued during a
 * loop turn's callbacks are written in that turn's check phase (a uv_check_t
 * beside the poll), before the next poll. Both handles are closed from
 * hiredis's cleanup hook and the memory freed after both close callbacks. */
#ifndef TD_REDIS_UV_H
#define TD_REDIS_UV_H

#include <stdint.h>

#include <hiredis/async.h>
#include <uv.h>

/* Attaches `ac` to `loop`. Call right after redisAsyncConnect*() and before
 * redisAsyncSetConnectCallback() (which arms the first write event).
 * Returns 0, UV_EINVAL if `ac` is already attached, UV_ENOMEM, or the
 * uv_poll_init error. On error the context is untouched (free it). */
int redisuv_attach(redisAsyncContext *ac, uv_loop_t *loop);

/* How long (ms, loop time) every readable event has ended at
 * REDISUV_MAX_READS_PER_POLL with bytes still waiting in the socket: the
 * reader has been behind what Redis sends for that long (0 once a read
 * event empties the socket). A subscriber that stays behind is cut by
 * Redis at its output buffer limit. */
uint64_t redisuv_behind_ms(const redisAsyncContext *ac);

/* Largest output buffer kept allocated once written out (see redis_uv.c):
 * a loop iteration's worth of pipelined commands on one connection. */
#define REDISUV_OBUF_KEEP (1024 * 1024)

#endif
