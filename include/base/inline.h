/* Inlining hints for the per-message paths. A function called once per
 * message or per byte costs its call (saving registers, passing many
 * arguments) on top of its work; where callgrind showed that call to be a
 * good part of the work, the hot part is forced inline and the rare part
 * kept out of line, so the hot loop stays small. */
#ifndef TD_INLINE_H
#define TD_INLINE_H

#ifdef __GNUC__
#define TD_HOT_INLINE inline __attribute__((always_inline))
#define TD_COLD __attribute__((noinline, cold))
#else
#define TD_HOT_INLINE inline
#define TD_COLD
#endif

#endif
