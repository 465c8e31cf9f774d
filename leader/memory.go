package leader

// Memory is what the HA loop remembers from one cycle to the next: the
// state of its state machine, in one value. It goes into Decide inside
// Facts, and carrying out an action returns the next one (the action's
// outcome); nothing else changes it.
type Memory struct {
	// Following is the member the local replica was last pointed at.
	Following string
	// CrashRestartTried: the leader's Postgres was restarted once since it
	// was last seen healthy.
	CrashRestartTried bool
	// RewindFailed: the last pg_rewind failed; re-clone instead.
	RewindFailed bool
	// CleanStop: the local Postgres was stopped cleanly as part of a
	// switchover or handover and can follow the new leader without rewind.
	CleanStop bool
	// SyncManaged: this daemon may have set synchronous_standby_names
	// (true at start: a previous daemon may have left it in a running
	// server's file), so turning synchronous_mode off must clear it.
	SyncManaged bool
	// Backoff holds back an action that keeps failing.
	Backoff failures
	// ReplicaTimeline is the newest timeline the local replica was seen
	// receiving WAL on. A replica without a WAL receiver reports its
	// control file's timeline, which stays behind a timeline switch until
	// a restartpoint (minutes later): without this, a replica whose
	// upstream just went away would look as if it had stayed on the old
	// timeline, past the fork, and be rewound or re-cloned for nothing.
	ReplicaTimeline int64
	// CandidateWait is since when this member, named in a planned
	// switchover, has waited to take over.
	CandidateWait candidateWait
}

// initialMemory is the memory of a daemon that just started.
func initialMemory() Memory { return Memory{SyncManaged: true} }

// observe takes in what the local server reports this round and returns
// the memory updated and the report completed with what the memory
// knows: a replica's timeline is the newest it was seen receiving, and
// a streaming replica has no rewind failure to remember (it needs none).
func (m Memory) observe(local Local) (Memory, Local) {
	switch {
	case !local.Initialized || (local.Running && !local.InRecovery):
		m.ReplicaTimeline = 0
	case local.Running && local.InRecovery:
		if local.Streaming {
			m.ReplicaTimeline = max(m.ReplicaTimeline, local.Timeline)
			m.RewindFailed = false
		}
		local.Timeline = max(local.Timeline, m.ReplicaTimeline)
	}
	return m, local
}

// healed returns m after the leader's Postgres was seen running as a
// primary: the next crash may be restarted in place once more.
func (m Memory) healed() Memory {
	m.CrashRestartTried = false
	return m
}
