"""Answers for notebook 03."""


def safe_increment(counter, n):
    """Add 1 to counter.value, n times, without losing increments to other processes."""
    for _ in range(n):
        with counter.get_lock():
            counter.value += 1


def count_evens(counter, numbers):
    """Add to counter.value how many of numbers are even, taking its lock only once."""
    evens = sum(1 for number in numbers if number % 2 == 0)
    with counter.get_lock():
        counter.value += evens
