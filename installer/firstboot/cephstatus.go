package firstboot

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"time"
)

// CephHealth is the cluster's state in brief, as `ceph -s --format json`
// reports it (Ceph 16, where the osdmap summary is flat, as since 15).
type CephHealth struct {
	Status string   // HEALTH_OK, HEALTH_WARN or HEALTH_ERR
	Checks []string // the health checks raised, e.g. MON_CLOCK_SKEW, sorted
	Mons   int      // monitors in the monmap
	Quorum []string // monitors in quorum, by name
	// MgrAvailable: a manager is active (the status names none, only
	// that one is available and how many stand by).
	MgrAvailable bool
	MgrStandbys  int
	OSDs         int // OSDs in the osdmap
	Up, In       int // of which up, and in
}

// ParseCephStatus reads `ceph -s --format json`.
func ParseCephStatus(data []byte) (CephHealth, error) {
	var s struct {
		Health struct {
			Status string                     `json:"status"`
			Checks map[string]json.RawMessage `json:"checks"`
		} `json:"health"`
		QuorumNames []string `json:"quorum_names"`
		Monmap      struct {
			NumMons int `json:"num_mons"`
		} `json:"monmap"`
		OSDMap struct {
			NumOSDs   int `json:"num_osds"`
			NumUpOSDs int `json:"num_up_osds"`
			NumInOSDs int `json:"num_in_osds"`
		} `json:"osdmap"`
		MgrMap struct {
			Available   bool `json:"available"`
			NumStandbys int  `json:"num_standbys"`
		} `json:"mgrmap"`
	}
	if err := json.Unmarshal(data, &s); err != nil {
		return CephHealth{}, fmt.Errorf("ceph status: %w", err)
	}
	if s.Health.Status == "" {
		return CephHealth{}, errors.New("ceph status: no health.status")
	}
	h := CephHealth{
		Status: s.Health.Status, Mons: s.Monmap.NumMons, Quorum: s.QuorumNames,
		MgrAvailable: s.MgrMap.Available, MgrStandbys: s.MgrMap.NumStandbys,
		OSDs: s.OSDMap.NumOSDs, Up: s.OSDMap.NumUpOSDs, In: s.OSDMap.NumInOSDs,
	}
	for c := range s.Health.Checks {
		h.Checks = append(h.Checks, c)
	}
	slices.Sort(h.Checks)
	return h, nil
}

// CephStatusTimeout bounds one `ceph -s`. The ceph CLI is a Python
// program: on a loaded machine (three emulated storage nodes running
// Ceph, Consul and Vault on two cores) it took over 30 s, then over 2
// minutes, to answer while rados read every object at once; a slow
// answer is not a failed cluster.
const CephStatusTimeout = 5 * time.Minute

// CephStatus asks the cluster for its state as client.admin (the keyring
// the ceph phase put in /etc/ceph). run runs a program and returns its
// standard output (Storage.Command's form); nil runs it with os/exec.
// The health reporter calls it too.
func CephStatus(ctx context.Context, run func(ctx context.Context, name string, args ...string) ([]byte, error)) (CephHealth, error) {
	if run == nil {
		run = func(ctx context.Context, name string, args ...string) ([]byte, error) {
			return exec.CommandContext(ctx, name, args...).Output()
		}
	}
	cctx, cancel := context.WithTimeout(ctx, CephStatusTimeout)
	defer cancel()
	out, err := run(cctx, "ceph", "--connect-timeout", "30", "-s", "--format", "json")
	if err != nil && ctx.Err() == nil && cctx.Err() != nil {
		return CephHealth{}, fmt.Errorf("ceph -s: no answer in %s (are the monitors in quorum?): %w", CephStatusTimeout, err)
	}
	if err != nil {
		return CephHealth{}, err
	}
	return ParseCephStatus(out)
}

// Marker is the console line of a ceph phase that ended well:
//
//	KILN-CEPH-OK host=ceph-1 health=HEALTH_OK mons=3 osds=6/6
//
// mons counts the monitors in quorum, osds the OSDs up / in; a health
// other than HEALTH_OK names its checks (checks=A,B).
func (h CephHealth) Marker(host string) string {
	m := fmt.Sprintf("KILN-CEPH-OK host=%s health=%s mons=%d osds=%d/%d", host, h.Status, len(h.Quorum), h.Up, h.In)
	if h.Status != "HEALTH_OK" && len(h.Checks) > 0 {
		m += " checks=" + strings.Join(h.Checks, ",")
	}
	return m
}
