"""Shared state between processes: a Value guarded by its lock, and a Manager list."""

from multiprocessing import Manager, Process, Value


def add_batched(counter, n):
    # Count locally, then take the lock once: correct and cheap.
    with counter.get_lock():
        counter.value += n


def append(shared, value):
    shared.append(value)


if __name__ == "__main__":
    counter = Value("q", 0)
    procs = [Process(target=add_batched, args=(counter, 10_000)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    assert counter.value == 40_000, counter.value
    print("counter:", counter.value)

    with Manager() as manager:
        shared = manager.list()
        workers = [Process(target=append, args=(shared, i)) for i in range(3)]
        for p in workers:
            p.start()
        for p in workers:
            p.join()
        print("manager list:", sorted(shared))
