"""Answers for notebook 04."""

from multiprocessing import Manager, Process


def add_tag(shared, key, tag):
    """Append tag to the list stored at shared[key] (shared is a manager dict)."""
    tags = shared[key]  # a copy, fetched from the manager
    tags.append(tag)
    shared[key] = tags  # send the changed list back


def store_square(shared, n):
    shared[n] = n * n


def squares(numbers):
    """Return {n: n*n}, each square computed in its own process."""
    with Manager() as manager:
        shared = manager.dict()
        workers = [Process(target=store_square, args=(shared, n)) for n in numbers]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        return dict(shared)
