package roles

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/coreos/ignition/v2/config/v3_5/types"
	"github.com/vincent-petithory/dataurl"

	"github.com/kilnlab/kiln/internal/golden"
	"github.com/kilnlab/kiln/profiles"
)

// TestCephConf pins /etc/ceph/ceph.conf as Render writes it: the reference
// lab (three nodes; 8GiB and 16GiB of memory), the bonded lab (a cluster
// network, no memory given), one node (size 1) and two nodes (size 2, a
// node without OSD or memory).
func TestCephConf(t *testing.T) {
	for _, tc := range []struct{ profile, machine, golden string }{
		{"../profiles/homelab.yaml", "ceph-1", "ceph-1.ceph.conf"},
		{"../profiles/homelab.yaml", "ceph-2", "ceph-2.ceph.conf"},
		{"../profiles/testdata/good-bonded.yaml", "ceph-1", "bonded-ceph-1.ceph.conf"},
		{"../profiles/testdata/warn-one-node.yaml", "ceph-1", "one-node-ceph-1.ceph.conf"},
		{"../profiles/testdata/warn-two-nodes.yaml", "ceph-2", "two-nodes-ceph-2.ceph.conf"},
	} {
		t.Run(tc.golden, func(t *testing.T) {
			p, err := profiles.Load(tc.profile)
			if err != nil {
				t.Fatal(err)
			}
			i := slices.IndexFunc(p.Machines, func(m profiles.Machine) bool { return m.Name == tc.machine })
			cfg, err := Render(p, &p.Machines[i])
			if err != nil {
				t.Fatal(err)
			}
			golden.Check(t, filepath.Join("testdata", tc.golden), []byte(fileContents(t, cfg, CephConfPath)))
		})
	}
}

// Only storage nodes get a ceph.conf and a "ceph" identity.
func TestCephOnlyOnStorage(t *testing.T) {
	p, err := profiles.Default()
	if err != nil {
		t.Fatal(err)
	}
	for i := range p.Machines {
		m := &p.Machines[i]
		cfg, err := Render(p, m)
		if err != nil {
			t.Fatal(err)
		}
		hasConf := slices.ContainsFunc(cfg.Storage.Files, func(f types.File) bool { return f.Path == CephConfPath })
		hasID := strings.Contains(fileContents(t, cfg, IdentityPath), `"ceph"`)
		if storage := m.Role == profiles.RoleStorage; hasConf != storage || hasID != storage {
			t.Errorf("%s (%s): ceph.conf %v, ceph identity %v", m.Name, m.Role, hasConf, hasID)
		}
	}
}

func fileContents(t *testing.T, cfg types.Config, path string) string {
	t.Helper()
	for _, f := range cfg.Storage.Files {
		if f.Path == path {
			u, err := dataurl.DecodeString(*f.Contents.Source)
			if err != nil {
				t.Fatal(err)
			}
			return string(u.Data)
		}
	}
	t.Fatalf("no %s in the config", path)
	return ""
}
