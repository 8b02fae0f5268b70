"""Sieve (RFC 5228 and extensions, issue 19): a pure, sans-IO interpreter.

`lexer.py` (tokens with positions), `parser.py` (the generic grammar), then the
validator, the compiled form and the evaluator that turns a script and a message into a
list of actions. Nothing here does I/O: delivery applies the actions.
"""
