#!/bin/sh
# One line that proves an onboot container ran: its PID in its own namespace (1), the kernel
# and the architecture it runs on. Tests and scripts/build-example.sh look for the first words.
echo "hello from an oxkit onboot container: pid $$, $(uname -s) $(uname -r) $(uname -m)"
