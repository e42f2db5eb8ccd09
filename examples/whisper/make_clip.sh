#!/usr/bin/env bash
# Regenerates examples/whisper/speech.wav, the short synthetic speech clip used by the
# Whisper example's demo and tests. Not run in CI: the WAV is committed.
#
# Made with eSpeak NG 1.51 and SoX 14.4.2 (Debian: apt-get install -y espeak-ng sox).
# Voice en-us+f3 at 140 words/min with a 600 ms pause between the sentences: Whisper
# tiny.en transcribes every content word of this take and splits it into two segments
# ("The quick brown fox jump(s) over the lazy dog" / "It runs on your own machines").
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

text='The quick brown fox jumps over the lazy dog. <break time="600ms"/> It runs on your own machines.'
espeak-ng -m -v en-us+f3 -s 140 -w "$tmp/raw.wav" "<speak>$text</speak>"

# 16 kHz, mono, 16-bit PCM, no dither (-D: byte-identical reruns); trim leading/trailing silence, then pad 0.2 s each side.
sox -D "$tmp/raw.wav" -r 16000 -c 1 -b 16 "$here/speech.wav" \
    silence 1 0.05 1% reverse silence 1 0.05 1% reverse pad 0.2 0.2

soxi "$here/speech.wav"
