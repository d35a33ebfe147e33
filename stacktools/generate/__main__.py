"""``python -m stacktools.generate``: the generators' module names, in order, one a line
(what the Makefile's ``generate`` and ``check`` targets loop over)."""

from stacktools.generate import GENERATORS


def main() -> int:
    print("\n".join(GENERATORS))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
