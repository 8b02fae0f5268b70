"""Pure message handling (sans-IO): header blocks, the offset-recording MIME tree,
ENVELOPE / BODYSTRUCTURE data and FETCH section extraction. Nothing here does I/O."""
