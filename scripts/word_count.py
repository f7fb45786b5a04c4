"""Reads its input files from its own folder (data/) and counts words."""

from collections import Counter
from pathlib import Path

HERE = Path(__file__).parent

if __name__ == "__main__":
    text = (HERE / "data" / "poem.txt").read_text(encoding="utf-8")
    words = Counter(word.strip(".,;:!?").lower() for word in text.split())
    print(f"{sum(words.values())} words, {len(words)} distinct")
    for word, count in words.most_common(5):
        print(f"{count:>3}  {word}")
