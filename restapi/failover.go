package restapi

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/pgha/pgha/cluster"
)

// failoverRequest is the body of POST /switchover and POST /failover.
type failoverRequest struct {
	Leader      string
	Candidate   string
	ScheduledAt *time.Time
}

// stringField reads an optional string field of a request body.
func stringField(body map[string]any, key string) (string, error) {
	v, ok := body[key]
	if !ok || v == nil {
		return "", nil
	}
	s, ok := v.(string)
	if !ok {
		return "", fmt.Errorf("%q must be a string", key)
	}
	return s, nil
}

// parseSchedule is Patroni's parse_schedule: 400 without a timezone, 422
// in the past or unparsable.
func parseSchedule(v string, action string, now time.Time) (time.Time, int, string) {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04Z07:00", "2006-01-02 15:04:05Z07:00", "2006-01-02 15:04Z07:00"} {
		if t, err := time.Parse(layout, v); err == nil {
			if t.Before(now) {
				return t, http.StatusUnprocessableEntity, "Cannot schedule " + action + " in the past"
			}
			return t, 0, ""
		}
	}
	for _, layout := range []string{"2006-01-02T15:04:05", "2006-01-02T15:04", "2006-01-02 15:04:05", "2006-01-02 15:04"} {
		if _, err := time.Parse(layout, v); err == nil {
			return time.Time{}, http.StatusBadRequest, "Timezone information is mandatory for the scheduled " + action
		}
	}
	return time.Time{}, http.StatusUnprocessableEntity, "Unable to parse scheduled timestamp. It should be in an unambiguous format, e.g. ISO 8601"
}

func (s *Server) postSwitchover(w http.ResponseWriter, r *http.Request) {
	s.failover(w, r, "switchover")
}

func (s *Server) postFailover(w http.ResponseWriter, r *http.Request) {
	s.failover(w, r, "failover")
}

// failover is Patroni's do_POST_failover: validate, check a candidate can
// take over, write the failover key, and (unless scheduled) wait for the
// new leader.
func (s *Server) failover(w http.ResponseWriter, r *http.Request, action string) {
	body, err := readJSON(w, r, false)
	if err != nil {
		badBody(w, err)
		return
	}
	var req failoverRequest
	var sched string
	for key, dst := range map[string]*string{"leader": &req.Leader, "candidate": &req.Candidate, "scheduled_at": &sched} {
		if *dst, err = stringField(body, key); err != nil {
			writeText(w, http.StatusBadRequest, err.Error())
			return
		}
	}
	if req.Candidate == "" {
		if req.Candidate, err = stringField(body, "member"); err != nil {
			writeText(w, http.StatusBadRequest, err.Error())
			return
		}
	}
	v, ok := s.node.View()
	if !ok {
		writeText(w, http.StatusServiceUnavailable, "etcd is unreachable from this node: cannot "+action)
		return
	}
	s.log.Info("received "+action+" request", "leader", req.Leader, "candidate", req.Candidate, "scheduled_at", sched)
	code, msg := http.StatusBadRequest, ""
	switch {
	case action == "failover" && req.Candidate == "":
		msg = "Failover could be performed only to a specific candidate"
	case action == "switchover" && req.Leader == "":
		msg = "Switchover could be performed only from a specific leader"
	}
	if msg == "" && sched != "" {
		switch {
		case action == "failover":
			msg = "Failover can't be scheduled"
		case v.Paused():
			msg = "Can't schedule switchover in the paused state"
		default:
			t, c, m := parseSchedule(sched, action, s.Now())
			if c != 0 {
				code, msg = c, m
			} else {
				req.ScheduledAt = &t
			}
		}
	}
	if msg == "" && v.Paused() && req.Candidate == "" {
		msg = "Switchover is possible only to a specific candidate in a paused state"
	}
	if action == "failover" && req.Leader != "" {
		action = "switchover"
	}
	if msg == "" && req.Leader == req.Candidate {
		msg = "Switchover target and source are the same"
	}
	if msg == "" && req.ScheduledAt == nil {
		if why := failoverPossible(v, req.Leader, req.Candidate, action); why != "" {
			code, msg = http.StatusPreconditionFailed, why
		}
	}
	if msg != "" {
		writeText(w, code, msg)
		return
	}
	f := cluster.Failover{Leader: req.Leader, Member: req.Candidate, ScheduledAt: req.ScheduledAt}
	if err := s.actions.RequestFailover(r.Context(), f); err != nil {
		s.log.Warn(action+" request failed", "err", err)
		code := statusFor(err)
		if code == http.StatusServiceUnavailable {
			writeText(w, code, "failed to write failover key into etcd: "+err.Error())
			return
		}
		writeText(w, code, err.Error())
		return
	}
	if req.ScheduledAt != nil {
		writeText(w, http.StatusAccepted, strings.ToUpper(action[:1])+action[1:]+" scheduled")
		return
	}
	if action == "switchover" {
		s.metrics.Switchovers.Inc()
	} else {
		s.metrics.Failovers.Inc()
	}
	code, msg = s.pollFailover(r.Context(), v.Leader, req.Candidate, action)
	writeText(w, code, msg)
}

// failoverPossible is Patroni's is_failover_possible: "" when some member
// could take over, else why not (naming each candidate's problem).
func failoverPossible(v cluster.View, leader, candidate, action string) string {
	if leader != "" && v.Leader != leader {
		return "leader name does not match"
	}
	sync := syncNames(v)
	var members []cluster.Member
	switch {
	case candidate != "":
		if action == "switchover" && v.Config.SynchronousMode && !sync[candidate] {
			return "candidate name does not match with sync_standby"
		}
		m, ok := v.Member(candidate)
		if !ok {
			return "candidate does not exists"
		}
		members = []cluster.Member{m}
	case v.Config.SynchronousMode:
		for _, m := range v.Members {
			if sync[m.Name] {
				members = append(members, m)
			}
		}
		if len(members) == 0 {
			return action + " is not possible: can not find sync_standby"
		}
	default:
		for _, m := range v.Members {
			if m.Name != v.Leader && m.APIURL != "" {
				members = append(members, m)
			}
		}
		if len(members) == 0 {
			return action + " is not possible: cluster does not have members except leader"
		}
	}
	var whys []string
	for _, m := range members {
		why := cluster.WhyNotCandidate(v, m)
		if why == "" {
			return ""
		}
		whys = append(whys, m.Name+": "+why)
	}
	sort.Strings(whys)
	return action + " is not possible: no good candidates have been found (" + strings.Join(whys, "; ") + ")"
}

// pollFailover is Patroni's poll_failover_result: wait for a leader other
// than the old one; 503 when the request vanished without a new leader or
// the outcome is unknown after PollTimeout.
func (s *Server) pollFailover(ctx context.Context, oldLeader, candidate, action string) (int, string) {
	verb := strings.TrimSuffix(action, "over") // "switch" / "fail"
	title := strings.ToUpper(action[:1]) + action[1:]
	deadline := time.NewTimer(s.PollTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(s.PollInterval)
	defer tick.Stop()
	goneTimes := 0
	requested := time.Now()
	for {
		select {
		case <-ctx.Done():
			return http.StatusServiceUnavailable, title + " status unknown: request cancelled; operation may still be in progress"
		case <-deadline.C:
			return http.StatusServiceUnavailable, fmt.Sprintf("%s status unknown after %s; operation may still be in progress", title, s.PollTimeout)
		case <-tick.C:
		}
		v, ok := s.node.View()
		if !ok {
			continue
		}
		if v.Leader != "" && v.Leader != oldLeader {
			if candidate == "" || candidate == v.Leader {
				return http.StatusOK, fmt.Sprintf("Successfully %sed over to %q", verb, v.Leader)
			}
			return http.StatusOK, fmt.Sprintf("%sed over to %q instead of %q", strings.ToUpper(verb[:1])+verb[1:], v.Leader, candidate)
		}
		// The request is gone while the old leader still holds the key:
		// the HA loop rejected it. Only a snapshot read after the request
		// was written can say so (the loop publishes its view between
		// cycles, and a planned stop takes a while), and two looks skip the
		// moment between deleting the key and the new leader taking over.
		if v.Failover == nil && v.Leader == oldLeader && oldLeader != "" && !v.ReadAt.IsZero() && v.ReadAt.After(requested) {
			goneTimes++
			if goneTimes >= 2 {
				return http.StatusServiceUnavailable, title + " failed"
			}
		} else {
			goneTimes = 0
		}
	}
}

// deleteSwitchover is DELETE /switchover: cancel a scheduled switchover.
func (s *Server) deleteSwitchover(w http.ResponseWriter, r *http.Request) {
	v, ok := s.node.View()
	if !ok {
		writeText(w, http.StatusServiceUnavailable, "etcd is unreachable from this node")
		return
	}
	if v.Failover == nil || v.Failover.ScheduledAt == nil {
		writeText(w, http.StatusNotFound, "no switchover is scheduled")
		return
	}
	if err := s.actions.ClearFailover(r.Context(), v.Failover.Revision); err != nil {
		writeText(w, http.StatusConflict, err.Error())
		return
	}
	writeText(w, http.StatusOK, "scheduled switchover deleted")
}
