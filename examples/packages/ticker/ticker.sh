#!/bin/sh
# Prints "tick N" every INTERVAL seconds (default 1) until stopped. A TERM ends it at once with
# a last line, so that a clean shutdown shows on the console.
interval=${1:-1}
trap 'echo "stopped after $n ticks"; exit 0' TERM INT
n=0
while :; do
  n=$((n + 1))
  echo "tick $n"
  # sleep in the background and wait, so that TERM is handled without waiting for sleep.
  sleep "$interval" &
  wait $!
done
