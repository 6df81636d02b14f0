"""What each request used and cost: the meter that reads usage from answers as they pass and
writes the audit row (`meter`), output estimated for streams cut short (`estimate`), prices
(`pricing`) and reports over the audit log (`reports`)."""
