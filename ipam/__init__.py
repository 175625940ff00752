"""Pure address management: pools carved into node CIDRs, conflicts between ranges, leases.

Nothing in this package reads a clock, draws a random number or does I/O, except
`ipam.store`, the one layer that talks to a datastore.
"""
