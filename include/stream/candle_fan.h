/* candle_fan: bars from the Redis channels candles:<tf>:<SYMBOL>, and
 * trades from trades:<SYMBOL> (the dashboard's tape), to the WebSocket and
 * SSE clients that asked for them.
 *
 * Like quotes, bars and trades reach clients from Redis, not from the
 * local engine: only the lease holder aggregates, and every instance
 * (holder or not) SUBSCRIBEs to the channels its clients want, the first
 * client of a channel subscribing and the last one leaving unsubscribing.
 * Each message is encoded once per transport and the same bytes are queued
 * on every client of the channel through hub_deliver, under the quotes'
 * slow-consumer limits (a client over its soft limit is not sent trades
 * or in-progress bars, whose newer ones follow; closed bars always).
 *
 * WebSocket:  {"type":"candle","channel":"candles:1m:AAPL","data":{bar}}
 *             {"type":"trade","channel":"trades:AAPL","symbol":"AAPL","data":{trade}}
 * SSE:        event: candle / data: {bar};  event: trade / data: {trade}
 * History (oldest first, from this instance's engine, or from Redis where
 * the bars were built elsewhere, candle_store.h):
 *   WebSocket {"type":"candles","symbol":"AAPL","tf":"1m","bars":[..]}
 *   SSE       event: candles / data: {"symbol":..,"tf":..,"bars":[..]} */
#ifndef TD_CANDLE_FAN_H
#define TD_CANDLE_FAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "market/candle.h"
#include "stream/hub.h"

/* Candle channels subscribed at most, over all clients: the six default
 * timeframes of ~680 symbols, well inside the subscriber's own bound. */
#define CANDLE_FAN_MAX_CHANNELS 4096
/* A payload from Redis longer than this is not a bar or a trade (ours are
 * < 512 B). */
#define CANDLE_FAN_PAYLOAD_MAX 4096

/* "candles:" + "86400s" + ":" + symbol, or "trades:" + symbol */
#define FAN_CHANNEL_MAX CANDLE_CHANNEL_MAX

typedef struct candle_fan candle_fan;
struct td_subscriber;

typedef struct {
  uint64_t channels;        /* subscribed now */
  uint64_t subscriptions;   /* client x channel */
  uint64_t messages;        /* bars and trades received from Redis */
  uint64_t deliveries;      /* bars and trades queued to clients */
  uint64_t bad_messages;    /* payloads that are not one JSON object */
  uint64_t dropped;         /* trades and in-progress bars not queued to a client over its soft limit (or closed) */
} candle_fan_stats;

/* `engine` answers history and names the timeframes; NULL: candles are
 * off and every subscription is refused. */
candle_fan *candle_fan_new(td_hub *hub, struct td_subscriber *sub, const candle_engine *engine);
void candle_fan_free(candle_fan *f);
/* History of bars this instance does not build (local(ud) false, or the
 * engine never saw the symbol) is read from `store` (candle_store.h), which
 * must outlive the clients. Without a store: the engine's only. */
struct cstore;
void candle_fan_set_store(candle_fan *f, struct cstore *store, bool (*local)(void *ud), void *ud);

/* 1: subscribed now, 0: was already, -EINVAL bad symbol, -ENOENT no such
 * timeframe (or candles off), -E2BIG the client has --max-client-symbols
 * candle channels, -ENOSPC CANDLE_FAN_MAX_CHANNELS are subscribed. */
int candle_fan_subscribe(candle_fan *f, hub_client *c, const char *sym, size_t n, const char *tf, size_t tf_len);
/* The symbol's trades (no timeframe; candles on or off): the same
 * results, channels counted with the bars'. */
int candle_fan_subscribe_trades(candle_fan *f, hub_client *c, const char *sym, size_t n);
/* 1: unsubscribed, 0: was not. */
int candle_fan_unsubscribe_trades(candle_fan *f, hub_client *c, const char *sym, size_t n);
/* 1: unsubscribed, 0: was not. */
int candle_fan_unsubscribe(candle_fan *f, hub_client *c, const char *sym, size_t n, const char *tf, size_t tf_len);
/* Every subscription of c goes (the hub calls this from hub_detach). */
void candle_fan_detach(candle_fan *f, hub_client *c);
/* Sends up to `limit` bars of sym/tf (see above): from the engine, or,
 * later, from the store (then "unavailable": true with no bars when Redis
 * did not answer). Live bars may come before a history read from the store. */
void candle_fan_send_history(candle_fan *f, hub_client *c, const char *sym, size_t n, const char *tf, size_t tf_len,
                             uint32_t limit);
/* A message from the subscriber: true when it was on a candle or trade
 * channel (delivered or refused), false for any other channel (and for a
 * trade channel that is also the quotes', --channel-prefix trades). */
bool candle_fan_on_message(candle_fan *f, const char *channel, size_t channel_len, const char *payload,
                           size_t payload_len);
void candle_fan_get_stats(const candle_fan *f, candle_fan_stats *out);

#endif
