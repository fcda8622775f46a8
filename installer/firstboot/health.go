package firstboot

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/kilnlab/kiln/profiles"
	"github.com/kilnlab/kiln/pxe/api"
)

// The health report (`kiln-firstboot health`, run by kiln-health.timer
// every HealthInterval) tells the gate how the machine's services are, as
// the machine sees them, over the gate's TLS port with the machine's
// certificate. It reads and changes nothing of the first boot: a service
// whose first-boot phase has not made it yet is "starting". A storage node
// reports:
//
//	ceph       the cluster's health as `ceph -s` gives it to client.admin:
//	           ok, warn or failed for Ceph's HEALTH_OK, HEALTH_WARN or
//	           HEALTH_ERR, which starts the detail, then monitors in quorum,
//	           the manager, OSDs up and in, and the checks raised; failed
//	           with why when the cluster does not answer
//	ceph-data  ok when every self-test object of the lab's pool reads
//	           back as written (each node's, so data of a node that is
//	           down is read from the others' copies), failed with why
//
// Both are "starting" until the first boot's ceph phase has finished. One
// console line says what changed, and only then:
//
//	KILN-HEALTH host=ceph-1 ceph=warn ceph-data=ok
//
// so that a serial log shows the cluster degrading and recovering without
// a line every 30 s.

// cephStatus maps Ceph's health to a service status (api.Health*).
var cephStatus = map[string]string{
	"HEALTH_OK":   api.HealthOK,
	"HEALTH_WARN": api.HealthWarn,
	"HEALTH_ERR":  api.HealthFailed,
}

// HealthReadTimeout bounds each rados command of the ceph-data check: a
// placement group that is not active blocks a read for ever, and a report
// must end (kiln-health.service's TimeoutStartSec). Not less: on three
// loaded emulated nodes a healthy cluster's read took over 20 s.
const HealthReadTimeout = 45 * time.Second

// Files of the health report, on /run: a boot starts afresh.
const (
	healthLast    = "/run/kiln/health.last" // the last console line
	healthReadDir = "/run/kiln/health-read" // each object read back, in turn
)

// Health checks the machine's services; doneDir is the first boot's record
// of finished tasks (Runner.Dir).
func (e *Env) Health(ctx context.Context, doneDir string) api.Health {
	h := api.Health{Services: []api.Service{}}
	s := e.storageNode()
	if e.Machine.Role == profiles.RoleStorage {
		h.Services = append(h.Services, s.health(ctx, doneDir)...)
	}
	if e.Machine.Consul != nil {
		h.Services = append(h.Services, s.consulHealth(ctx, doneDir))
	}
	if e.Machine.Vault != nil {
		h.Services = append(h.Services, s.vaultHealth(ctx, doneDir))
	}
	if e.Machine.K3s != nil {
		h.Services = append(h.Services, s.k3sHealth(ctx, doneDir))
	}
	return h
}

// storageNode is the node the storage phases and the health checks act on.
func (e *Env) storageNode() *node {
	s := &node{env: e, Storage: e.Storage}
	if s.Storage == nil {
		s.Storage = &Storage{}
	}
	return s
}

// health is a storage node's ceph and ceph-data services.
func (s *node) health(ctx context.Context, doneDir string) []api.Service {
	ceph := api.Service{Name: "ceph"}
	data := api.Service{Name: "ceph-data"}
	// While the first boot's ceph phase runs, its own reports say how it
	// goes; asking the cluster as well would only slow a bootstrap (the
	// ceph CLI is a Python program, heavy on a small or emulated CPU).
	if !(Runner{Dir: doneDir}).done("ceph.selftest") {
		const starting = "the first boot's ceph phase has not finished yet"
		ceph.Status, ceph.Detail = api.HealthStarting, starting
		data.Status, data.Detail = api.HealthStarting, starting
		return []api.Service{ceph, data}
	}
	h, err := CephStatus(ctx, s.run)
	switch {
	case err != nil:
		ceph.Status, ceph.Detail = api.HealthFailed, "the cluster does not answer: "+err.Error()
	case cephStatus[h.Status] == "":
		ceph.Status, ceph.Detail = api.HealthFailed, h.Status+" (unknown to kiln): "+h.Summary()
	default:
		ceph.Status, ceph.Detail = cephStatus[h.Status], h.Status+": "+h.Summary()
	}
	data.Status, data.Detail = s.dataHealth(ctx)
	return []api.Service{ceph, data}
}

// dataHealth reads back every self-test object, each command bounded.
func (s *node) dataHealth(ctx context.Context) (status, detail string) {
	fsid, err := s.fsid()
	if err != nil {
		return api.HealthFailed, err.Error()
	}
	bounded := *s
	st := *s.Storage
	st.SelftestTimeout = min(or(s.SelftestTimeout, HealthReadTimeout), HealthReadTimeout)
	bounded.Storage = &st
	if err := os.MkdirAll(s.path(healthReadDir), 0o755); err != nil {
		return api.HealthFailed, err.Error()
	}
	defer os.RemoveAll(s.path(healthReadDir))
	objs, err := bounded.readAll(ctx, fsid, healthReadDir+"/read")
	switch {
	case err != nil:
		return api.HealthFailed, err.Error()
	case len(objs) == 0:
		return api.HealthFailed, fmt.Sprintf("pool %s holds no self-test object", selftestPool)
	}
	plural := "s"
	if len(objs) == 1 {
		plural = ""
	}
	return api.HealthOK, fmt.Sprintf("read back %d object%s of pool %s: %s", len(objs), plural, selftestPool, strings.Join(objs, ", "))
}

// Summary is the cluster's state in one line, for the gate's page.
func (h CephHealth) Summary() string {
	mgr := "no manager active"
	if h.MgrAvailable {
		mgr = fmt.Sprintf("manager active, %d standby", h.MgrStandbys)
	}
	s := fmt.Sprintf("monitors %d/%d in quorum (%s), %s, OSDs %d up %d in of %d",
		len(h.Quorum), h.Mons, strings.Join(h.Quorum, ","), mgr, h.Up, h.In, h.OSDs)
	if len(h.Checks) > 0 {
		s += ", checks " + strings.Join(h.Checks, ",")
	}
	return s
}

// HealthLine is the console line of a report.
func HealthLine(host string, h api.Health) string {
	var b strings.Builder
	b.WriteString("KILN-HEALTH host=" + host)
	for _, s := range h.Services {
		b.WriteString(" " + s.Name + "=" + s.Status)
	}
	return b.String()
}

// PrintHealthChange prints line on the console when it differs from the
// last one printed since boot (kept under root + healthLast).
func (e *Env) PrintHealthChange(line string) error {
	root := ""
	if e.Storage != nil {
		root = e.Storage.Root
	}
	last := filepath.Join(root, healthLast)
	if b, err := os.ReadFile(last); err == nil && string(b) == line {
		return nil
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if _, err := fmt.Fprintln(e.Console, line); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(last), 0o755); err != nil {
		return err
	}
	return os.WriteFile(last, []byte(line), 0o644)
}
