package kernel

// RobustList is a thread's robust futex list registration
// (get_robust_list(2)).
type RobustList struct {
	Head, Len uint64
}
