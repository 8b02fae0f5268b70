"""Spam filtering (issue 18, embedded): verdicts, DNS lists, GTUBE, greylisting."""
