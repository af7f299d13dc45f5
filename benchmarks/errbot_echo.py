"""errbot's test backend answering `!echo`, in its own process (errbot sets up logging and a Flask app
for the whole process). Reads a count per line on stdin, answers with the seconds that many round
trips took (each message pushed, then its answer popped). `--inline` runs commands on the backend's
own thread (BOT_ASYNC off), errbot's fastest setting; without it, errbot's default thread pool."""

import logging
import sys
import time


def main() -> None:
    from errbot.backends.test import TestBot

    inline = "--inline" in sys.argv
    bot = TestBot(loglevel=logging.ERROR, extra_config={"BOT_ASYNC": False} if inline else None)
    bot.start()
    print("ready", flush=True)
    for line in sys.stdin:
        count = int(line)
        started = time.perf_counter()
        for _ in range(count):
            bot.push_message("!echo hi")
            if bot.pop_message() != "hi":
                raise SystemExit("errbot did not echo")
        print(time.perf_counter() - started, flush=True)


if __name__ == "__main__":
    main()
