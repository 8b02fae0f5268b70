"""Final delivery: recipient resolution (aliases, catch-all) and local mailboxes."""
