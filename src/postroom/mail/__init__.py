"""Pure message handling (sans-IO): header blocks, the offset-recording MIME tree,
ENVELOPE / BODYSTRUCTURE data, FETCH section extraction and the modified UTF-7
mailbox-name codec (utf7.py: IMAP and the Maildir importers both speak it). Nothing here
does I/O."""
