"""Who is calling and what they may ask for: a presented relay key looked up (`relay_keys`), the
D1 queries for relay keys (`key_store`), and a key's model and budget policy (`policy`)."""
