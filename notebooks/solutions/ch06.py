"""Answers for notebook 06."""


def test_parallel_sum():
    """parallel_sum agrees with sum() on uneven, even, tiny and empty lists."""
    for numbers in ([], [7], [1, 2, 3], list(range(-20, 81)), list(range(100))):
        assert parallel_sum(numbers) == sum(numbers)  # noqa: F821 (imported by the check)
