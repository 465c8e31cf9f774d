package restapi

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/pgha/pgha/cluster"
	"github.com/pgha/pgha/config"
)

// postRestart is POST /restart: restart the local Postgres now. Body
// filters as Patroni: role (primary|standby_leader|replica),
// restart_pending (only when a restart is pending), timeout, and
// postgres_version; schedule is refused (pgha does not schedule restarts).
func (s *Server) postRestart(w http.ResponseWriter, r *http.Request) {
	body, err := readJSON(w, r, true)
	if err != nil {
		badBody(w, err)
		return
	}
	v, _ := s.node.View()
	for k, val := range body {
		switch k {
		case "schedule":
			if v.Paused() {
				writeText(w, http.StatusInternalServerError, "Can't schedule restart in the paused state")
				return
			}
			writeText(w, http.StatusBadRequest, "pgha does not schedule restarts: restart now (omit schedule)")
			return
		case "role":
			role, _ := val.(string)
			if role == "master" {
				role = string(cluster.RolePrimary)
			}
			switch cluster.Role(role) {
			case cluster.RolePrimary, cluster.RoleStandbyLeader, cluster.RoleReplica:
				body[k] = role
			default:
				writeText(w, http.StatusBadRequest, "PostgreSQL role should be either primary, standby_leader, or replica")
				return
			}
		case "timeout":
			if !positiveTimeout(val) {
				writeText(w, http.StatusBadRequest, "Timeout should be a positive number of seconds")
				return
			}
		case "postgres_version":
			s, ok := val.(string)
			if !ok {
				writeText(w, http.StatusBadRequest, fmt.Sprintf("postgres_version %v is not a version string such as 15.4", val))
				return
			}
			if _, err := postgresVersionToInt(s); err != nil {
				writeText(w, http.StatusBadRequest, err.Error())
				return
			}
		case "restart_pending":
		default:
			writeText(w, http.StatusBadRequest, "Unknown filter for the scheduled restart: "+k)
			return
		}
	}
	f := s.facts(r.Context())
	if role, ok := body["role"].(string); ok && role != string(f.st.Role) {
		writeText(w, http.StatusServiceUnavailable, "restart conditions are not satisfied")
		return
	}
	if pending, _ := body["restart_pending"].(bool); pending && !f.st.PendingRestart && len(f.st.PendingRestartReason) == 0 {
		writeText(w, http.StatusServiceUnavailable, "restart conditions are not satisfied")
		return
	}
	// Patroni restarts only a server older than postgres_version.
	if pv, ok := body["postgres_version"].(string); ok && f.st.ServerVersion > 0 {
		if want, _ := postgresVersionToInt(pv); want <= f.st.ServerVersion {
			writeText(w, http.StatusServiceUnavailable, "restart conditions are not satisfied")
			return
		}
	}
	if err := s.actions.Restart(r.Context()); err != nil {
		s.log.Warn("restart failed", "err", err)
		writeText(w, statusFor(err), "restart failed: "+err.Error())
		return
	}
	s.log.Info("Postgres restarted on request")
	writeText(w, http.StatusOK, "restarted successfully")
}

// deleteRestart is DELETE /restart: pgha schedules no restarts, so there
// is never one to delete (Patroni's 404 answer).
func (s *Server) deleteRestart(w http.ResponseWriter, r *http.Request) {
	writeText(w, http.StatusNotFound, "no restarts are scheduled")
}

// postReload is POST /reload: re-read the configuration file. It takes
// no parameters; a body, if any, must still be a JSON object.
func (s *Server) postReload(w http.ResponseWriter, r *http.Request) {
	if _, err := readJSON(w, r, true); err != nil {
		badBody(w, err)
		return
	}
	if err := s.actions.Reload(r.Context()); err != nil {
		writeText(w, statusFor(err), "reload failed: "+err.Error())
		return
	}
	writeText(w, http.StatusAccepted, "reload scheduled")
}

// postReinitialize is POST /reinitialize {"force": bool}: re-clone this
// replica from the leader; 503 with the reason when refused.
func (s *Server) postReinitialize(w http.ResponseWriter, r *http.Request) {
	body, err := readJSON(w, r, true)
	if err != nil {
		badBody(w, err)
		return
	}
	force := false
	switch x := body["force"].(type) {
	case nil:
	case bool:
		force = x
	case string:
		force = x == "true" || x == "on" || x == "yes" || x == "1"
	default:
		writeText(w, http.StatusBadRequest, `"force" must be true or false`)
		return
	}
	if err := s.actions.Reinitialize(r.Context(), force); err != nil {
		code := statusFor(err)
		if code != http.StatusBadRequest {
			code = http.StatusServiceUnavailable
		}
		writeText(w, code, err.Error())
		return
	}
	writeText(w, http.StatusOK, "reinitialize started")
}

// positiveTimeout reports whether a restart timeout is a positive number
// of seconds: a JSON number, or a string such as "30", "30s" or "2m"
// (Patroni's parse_int with unit s).
func positiveTimeout(v any) bool {
	switch x := v.(type) {
	case float64:
		return x > 0
	case string:
		d, err := config.ParseDuration(x)
		return err == nil && d > 0
	}
	return false
}

// postgresVersionToInt is Patroni's postgres_version_to_int: "15.4" ->
// 150004, "9.6.24" -> 90624, with Patroni's messages for what it refuses.
func postgresVersionToInt(v string) (int, error) {
	parts := strings.Split(v, ".")
	nums := make([]int, 0, 3)
	for _, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 || n > 99 {
			return 0, fmt.Errorf("Invalid PostgreSQL version: %s", v)
		}
		nums = append(nums, n)
	}
	if len(nums) < 2 || len(nums) > 3 || (len(nums) == 2 && nums[0] < 10) {
		return 0, fmt.Errorf("Invalid PostgreSQL version format: X.Y or X.Y.Z is accepted: %s", v)
	}
	if len(nums) == 2 {
		nums = []int{nums[0], 0, nums[1]}
	}
	return nums[0]*10000 + nums[1]*100 + nums[2], nil
}
