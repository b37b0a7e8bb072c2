/* Every fixed limit of tickerd, in one place.
 *
 * Limits an operator may want to change are options (config.h) and their
 * defaults are named here too; the rest are compile-time constants whose
 * comments say why the number is what it is. */
#ifndef TD_LIMITS_H
#define TD_LIMITS_H

/* Defaults that config.c also prints are plain literals: it parses them as text. */

/* ---- HTTP ---------------------------------------------------------------- */
/* Request line + headers. Past it: 431. Matches common proxy defaults. */
#define TD_HTTP_MAX_HEAD_BYTES        (16 * 1024)
/* Default request body limit (--max-body-bytes). Past it: 413. */
#define TD_HTTP_DEFAULT_MAX_BODY      1048576   /* 1 MiB; a literal: config.c parses defaults as text */
/* Headers we keep per request; further ones are parsed but not stored. */
#define TD_HTTP_MAX_HEADERS           64
/* Bytes read from a socket per read callback. */
#define TD_HTTP_READ_BUF              (64 * 1024)
/* Above this many bytes queued for a peer we stop reading its requests until
 * the queue drains: a client that never reads cannot grow our memory. */
#define TD_HTTP_WRITE_HIGH_WATER      (256 * 1024)
/* Default of --write-timeout-ms: a peer with responses queued that reads
 * none of them for this long is closed. */
#define TD_HTTP_WRITE_TIMEOUT_MS      30000
#define TD_DEFAULT_HEADER_TIMEOUT_MS  10000
#define TD_DEFAULT_IDLE_TIMEOUT_MS    60000
#define TD_DEFAULT_MAX_CONNECTIONS    20000
#define TD_DEFAULT_SHUTDOWN_GRACE_MS  5000
/* How long a refused connection (503) may take to read its answer. */
#define TD_HTTP_REJECT_LINGER_MS      1000
#define TD_LISTEN_BACKLOG             1024

/* ---- Tasks --------------------------------------------------------------- */
#define TD_DEFAULT_MAX_TASKS          1000000
#define TD_DEFAULT_TASK_RETENTION_MS  600000    /* 10 min */
/* Finished tasks kept at most; the oldest go first past it, so that a long
 * burst of requests cannot grow memory for the whole retention time. */
#define TD_DEFAULT_MAX_FINISHED_TASKS 1000000
/* Captured request data per task, truncated past these. */
#define TD_TASK_MAX_UA                256
#define TD_TASK_MAX_PATH              256
#define TD_TASK_MAX_QUERY             512
/* How many recent task ids GET /tasks can list. */
#define TD_TASK_RECENT                1024
#define TD_TASK_LIST_DEFAULT          50
/* Seconds a client is told to wait when the task table is full. */
#define TD_TASK_RETRY_AFTER_S         1

/* ---- Buffers (buf.c) ------------------------------------------------------ */
/* Freed small td_bufs are kept for reuse, per size class: a quote's payload,
 * WebSocket frame and SSE event are 200-300 bytes, made and freed at the
 * quote rate. Allocation sizes of the classes, header included. */
#define TD_BUF_POOL_SMALL_BYTES       256
#define TD_BUF_POOL_LARGE_BYTES       512
/* Buffers kept at most, all classes together (what /status reports as
 * "pooled"): at most 4,096 x 512 bytes = 2 MiB, about four 1,000-quote
 * batches' worth. Past it a freed buffer goes back to malloc. */
#define TD_BUF_POOL_MAX               4096

/* ---- Quotes and Redis ---------------------------------------------------- */
#define TD_SYMBOL_MAX                 16
#define TD_DEFAULT_SIM_RATE           20
/* Symbols tickerd tracks at most: ids in the symbol table (market/symtab.h),
 * which bound the store, the hub, the outbox and quotes:last. */
#define TD_MAX_SYMBOLS                16384
/* Publishing connections. Redis reads at most 16 KiB from one client per
 * turn of its event loop, so one pipelined connection stops near 0.7 M
 * PUBLISH/s here while two reach 1.3 M (redis-benchmark -P 64 -c 1 vs -c 2).
 * Each channel always goes through the same connection, so its messages stay
 * in order. */
#define TD_REDIS_PUBLISH_CONNS        4
/* PUBLISH commands in flight before new quotes go to the conflating outbox. */
#define TD_REDIS_MAX_INFLIGHT         65536
/* POST /quotes answers wait while more PUBLISH than this are unanswered
 * (ingest_pace.h): ~16 ms of Redis's work at 1 M/s keeps it busy between a
 * client's batches, and stays far below what makes the outbox conflate
 * (PUB_MAX_PENDING_BYTES per connection, ~20k quotes). */
#define TD_DEFAULT_INGEST_MAX_BACKLOG 16384
#define TD_REDIS_CONNECT_TIMEOUT_MS   2000
#define TD_REDIS_COMMAND_TIMEOUT_MS   5000
#define TD_REDIS_BACKOFF_MIN_MS       100
#define TD_REDIS_BACKOFF_MAX_MS       5000
/* How often the latest quotes are written to the quotes:last hash. */
#define TD_REDIS_LAST_FLUSH_MS        100
#define TD_CHANNEL_PREFIX_MAX         64
/* The upstream lease (redis/lease.h): a dead holder is replaced within the
 * TTL; a holder renews five times per TTL so that one or two lost renews
 * cost nothing. */
#define TD_DEFAULT_LEASE_TTL_MS       5000
#define TD_DEFAULT_LEASE_RENEW_MS     1000

/* ---- Streaming ----------------------------------------------------------- */
#define TD_DEFAULT_HISTORY_SIZE       1000
#define TD_DEFAULT_HISTORY_MS         300000    /* 5 min */
#define TD_DEFAULT_MAX_STREAM_CLIENTS 20000
#define TD_DEFAULT_MAX_CLIENT_SYMBOLS 256
#define TD_DEFAULT_WS_MAX_MESSAGE     65536
#define TD_DEFAULT_CLIENT_SOFT_BYTES  262144
#define TD_DEFAULT_CLIENT_HARD_BYTES  1048576
#define TD_DEFAULT_CLIENT_SOFT_MS     10000
#define TD_DEFAULT_PING_INTERVAL_MS   25000
#define TD_DEFAULT_STREAM_IDLE_MS     75000

#endif
