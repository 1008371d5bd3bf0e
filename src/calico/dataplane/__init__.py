"""Felix's side effects: programming the kernel from calculation messages."""
