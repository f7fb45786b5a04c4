"""CPU-bound work spread over a multiprocessing Pool: count primes, sum squares."""

import math
import os
from multiprocessing import Pool


def is_prime(n: int) -> bool:
    if n < 2:
        return False
    if n % 2 == 0:
        return n == 2
    return all(n % d for d in range(3, math.isqrt(n) + 1, 2))


def count_primes(bounds: tuple[int, int]) -> int:
    low, high = bounds
    return sum(1 for n in range(low, high) if is_prime(n))


def sum_of_squares(bounds: tuple[int, int]) -> int:
    low, high = bounds
    return sum(n * n for n in range(low, high))


def chunks(limit: int, parts: int) -> list[tuple[int, int]]:
    step = -(-limit // parts)
    return [(start, min(start + step, limit)) for start in range(0, limit, step)]


if __name__ == "__main__":
    limit = 200_000
    workers = 2
    with Pool(workers) as pool:
        primes = sum(pool.map(count_primes, chunks(limit, 8)))
        squares = sum(pool.map(sum_of_squares, chunks(limit, 8)))
    # Cross-check the parallel answers against a direct computation.
    assert squares == (limit - 1) * limit * (2 * limit - 1) // 6
    print(f"{os.cpu_count()} CPU(s) visible, {workers} pool workers")
    print(f"primes below {limit:,}: {primes:,}")
    print(f"sum of squares below {limit:,}: {squares:,}")
