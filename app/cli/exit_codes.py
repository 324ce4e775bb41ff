"""Exit statuses of ``python -m app COMMAND`` (listed in the README)."""

OK = 0
ERROR = 2  # bad input or options, a file that cannot be read or written (the message names it)
INPUT_PROBLEMS = 3  # finished, outputs complete, but the input had problems (truncated video, skipped images)
INTERRUPTED = 130  # Ctrl+C (SIGINT): files finished, the frames so far kept
TERMINATED = 143  # SIGTERM: the same as Ctrl+C
