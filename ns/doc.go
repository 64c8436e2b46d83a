// Package ns holds what hutch does with Linux namespaces outside the child
// itself: the ID maps of a sandbox's user namespace, and the cache of
// provably empty network namespaces that runs pass on to one another.
//
// Creating a network namespace is the costliest part of a sandbox's clone,
// and the kernel creates and destroys them under one global lock. A run's
// namespace holds nothing of the run once every process in it is gone and
// no socket is left (not even in TIME_WAIT): a command without capability
// there cannot have changed its interfaces, routes, firewall or sysctls.
// RecycleNetwork checks, in the background, and keeps such a namespace, and
// TakeNetwork hands it to the next run, which joins it instead of making
// one. Its packet counters
// (lo's, /proc/net/snmp) are the one thing carried over. AwaitNetwork adds
// a namespace being made elsewhere, for a process's first run (the hutch
// command makes one while it starts).
package ns
