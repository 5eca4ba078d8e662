#!/bin/sh
# Prints a greeting with the machine the build step ran on.
echo "$1 from a $(uname -m) build step"
