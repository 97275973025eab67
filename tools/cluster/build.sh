#!/usr/bin/env bash
# Placeholder until the real-cluster toolchain lands (issue #7).
exit 0
