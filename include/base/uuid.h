/* UUIDv4 from getrandom(2), drawn from a pooled buffer so that a request
 * costs no system call. */
#ifndef TD_UUID_H
#define TD_UUID_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define UUID_STR_LEN 36

int uuid_v4(uint8_t out[16]);
void uuid_format(const uint8_t id[16], char out[UUID_STR_LEN + 1]);
/* Parses the canonical 8-4-4-4-12 form, either case. */
bool uuid_parse(const char *s, size_t len, uint8_t out[16]);
/* Random bytes from the same pool. */
int uuid_random_bytes(void *out, size_t n);

#endif
