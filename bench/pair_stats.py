"""bench/pair_stats.py GOAL ON OFF: how much more "on" costs than "off",
from runs taken in pairs (ON and OFF: comma-separated figures, the i-th of
each measured one right after the other).

On a shared machine one binary's CPU per trade moves by tens of percent
between runs a minute apart, so one median of each says little about a
difference of a few percent. Each pair's ratio cancels what the two runs
shared; the median of the ratios is the estimate. Its 95 % interval is the
distribution-free one (order statistics, from the binomial distribution:
no assumption about the noise's shape): the k-th smallest and k-th largest
ratios, k the largest for which the chance that fewer than k ratios fall
on one side of the true median is at most 2.5 %. Six pairs are the fewest
that have one. Prints one line: "<median %> <low %> <high %> <pairs>
<verdict>", the verdict "met" when the whole interval is at or under GOAL,
"NOT met" when it is all above, "at the goal" when it holds GOAL (more
pairs would tell) and "too few pairs" under six."""
import math
import statistics
import sys

TAIL = 0.025   # each side of a 95 % interval


def order_k(n):
    """The interval's rank from each end (1-based), or 0 when n is too small."""
    k, below = 0, 0.0
    while k < n:
        below += math.comb(n, k) / 2 ** n   # P(fewer than k + 1 ratios below the median)
        if below > TAIL:
            break
        k += 1
    return k


def main():
    goal = float(sys.argv[1])
    on = [float(x) for x in sys.argv[2].split(",") if x]
    off = [float(x) for x in sys.argv[3].split(",") if x]
    pcts = sorted((a / b - 1) * 100 for a, b in zip(on, off) if b > 0)
    if not pcts:
        print("n/a n/a n/a 0 n/a")
        return
    med, k = statistics.median(pcts), order_k(len(pcts))
    if k == 0:
        print(f"{med:.1f} n/a n/a {len(pcts)} too few pairs")
        return
    low, high = pcts[k - 1], pcts[len(pcts) - k]
    verdict = "met" if high <= goal else "NOT met" if low > goal else "at the goal"
    print(f"{med:.1f} {low:.1f} {high:.1f} {len(pcts)} {verdict}")


if __name__ == "__main__":
    main()
