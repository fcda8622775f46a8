package firstboot

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kilnlab/kiln/plan"
	"github.com/kilnlab/kiln/profiles"
	"github.com/kilnlab/kiln/roles"
)

// fakeNode is ceph-1 of the reference lab as its ceph phase sees it: a
// tree under root that the real renderers made (machine.json, ceph.conf and
// the node's secrets, by roles.Render, RenderSecrets and Apply), sysfs and
// /dev for its two disks laid out by the real plan (vda: the system disk
// with kiln-osd as partition 4; vdb: the data disk), and a fake of every
// program the phase runs, keeping the state those programs would keep.
// Its persistent state (root, enabled units, OSDs, the cluster's pools and
// objects) survives a "reboot"; ran and the power cut are per boot.
type fakeNode struct {
	t    *testing.T
	root string
	host string

	ran      []string // this boot's commands, "name arg..."
	cutAt    int      // 1-based index in ran of the command the power dies in; 0: none
	cutAfter bool     // the command's effect is done when the power dies
	// halt ends the boot when the power dies (cancels its context), so
	// no bounded wait goes on polling a dead machine; dead fails every
	// command after it.
	halt   context.CancelFunc
	dead   bool
	broken []string // what a real system would have done wrong

	timeSynced bool            // timedatectl's answer
	gateAhead  time.Duration   // how far the gate's clock is ahead (NTPOffset)
	ntpErr     error           // the gate's NTP service does not answer
	ntpRTT     time.Duration   // the round trip of each NTP measurement
	steps      []time.Duration // the clock steps made
	peersUp    bool            // the other monitors answer
	enabled    map[string]bool // systemd units enabled, hence running after a boot
	osds       map[string]*fakeOSD
	nextOSD    int
	// pools are the cluster's pools, by name: a small object store that
	// the other nodes share (seedObject writes as one of them would).
	pools map[string]*fakePool
	// pgsInactive: rados put and get block (until their deadline), as on
	// a placement group that is not active.
	pgsInactive bool
}

type fakePool struct {
	apps    map[string]bool   // applications enabled
	objects map[string]string // name: data
}

type fakeOSD struct {
	id                   int
	clusterFSID, osdFSID string
}

const (
	testFSID  = "6c1f3e2a-9d4b-4c59-8a2e-2f6a5b7c8d90"
	otherFSID = "0b5d6f7e-1a2b-4c3d-8e9f-a0b1c2d3e4f5"
)

var errPowerCut = errors.New("power cut")

// testKey is a cephx key as image/secrets writes them (base64 of 28 bytes).
func testKey(i int) string {
	return fmt.Sprintf("AQB%03dAAAAAAABAAeRmFrZUtleUZvclRlc3RzIQ==", i)
}

func newFakeNode(t *testing.T) (*fakeNode, *Env, *bytes.Buffer) {
	t.Helper()
	p, err := profiles.Default()
	if err != nil {
		t.Fatal(err)
	}
	// Ceph alone: the consul and vault phases have tests of their own
	// (consul_test.go), against a Consul that answers.
	p.Services = nil
	m := &p.Machines[1]
	if m.Name != "ceph-1" {
		t.Fatalf("machine 1 of the reference lab is %s", m.Name)
	}
	f := &fakeNode{t: t, root: t.TempDir(), host: m.Name, timeSynced: true, peersUp: true,
		enabled: map[string]bool{}, osds: map[string]*fakeOSD{}, pools: map[string]*fakePool{}}
	cfg, err := roles.Render(p, m)
	if err != nil {
		t.Fatal(err)
	}
	if err := roles.Apply(cfg, f.root); err != nil {
		t.Fatal(err)
	}
	mgr := map[string]string{}
	for i, h := range []string{"ceph-1", "ceph-2", "ceph-3"} {
		mgr[h] = testKey(10 + i)
	}
	sec, err := roles.RenderSecrets(p, m, roles.Secrets{CACert: []byte("ca\n"), MachineCert: []byte("cert\n"), MachineKey: []byte("key\n"),
		Ceph: &roles.CephSecrets{FSID: testFSID, Mon: testKey(1), Admin: testKey(2), BootstrapOSD: testKey(3), Mgr: mgr}})
	if err != nil {
		t.Fatal(err)
	}
	if err := roles.Apply(sec, f.root); err != nil {
		t.Fatal(err)
	}
	pl, err := plan.Compute(p)
	if err != nil {
		t.Fatal(err)
	}
	pm, _ := pl.Machine(m.Name)
	for i, d := range pm.Disks {
		name := []string{"vda", "vdb"}[i]
		f.addDisk(name, d.Serial, d.Size)
		if d.Layout != nil {
			for _, part := range d.Layout.Partitions {
				f.addPartition(name, part.Number, part.Name, part.GUID, part.Start, part.Size)
			}
		}
	}
	id, err := LoadMachine(filepath.Join(f.root, roles.IdentityPath))
	if err != nil {
		t.Fatal(err)
	}
	console := &bytes.Buffer{}
	env := &Env{
		Log: quiet(), Console: console, Machine: id, StatePartUUID: "state-uuid",
		Exec: func(ctx context.Context, name string, args ...string) error {
			_, err := f.command(ctx, name, args...)
			return err
		},
		Addrs: addrs("127.0.0.1/8", "192.168.1.11/24"), Hostname: host("ceph-1"),
		Storage: &Storage{Root: f.root, Command: f.command, Poll: time.Millisecond,
			NTPOffset: func(context.Context, string) (time.Duration, time.Duration, error) {
				return f.gateAhead, f.ntpRTT, f.ntpErr
			},
			StepClock:       func(d time.Duration) error { f.steps = append(f.steps, d); f.gateAhead -= d; return nil },
			TimeSyncTimeout: 20 * time.Millisecond, QuorumTimeout: 50 * time.Millisecond, SettleTimeout: 20 * time.Millisecond,
			SelftestTimeout: 5 * time.Second},
	}
	return f, env, console
}

// write puts a file under root.
func (f *fakeNode) write(p, data string) {
	f.t.Helper()
	full := filepath.Join(f.root, p)
	if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
		f.t.Fatal(err)
	}
	if err := os.WriteFile(full, []byte(data), 0o644); err != nil {
		f.t.Fatal(err)
	}
}

// addDisk makes a disk as sysfs and /dev show it.
func (f *fakeNode) addDisk(name, serial string, size uint64) {
	f.write("/sys/block/"+name+"/size", strconv.FormatUint(size/512, 10)+"\n")
	f.write("/sys/block/"+name+"/serial", serial+"\n")
	f.write("/dev/"+name, "")
}

// addPartition makes a partition as sysfs, /dev and udev's by-partuuid
// link show it.
func (f *fakeNode) addPartition(disk string, number int, name, uuid string, start, size uint64) {
	part := disk + strconv.Itoa(number)
	dir := "/sys/block/" + disk + "/" + part
	f.write(dir+"/partition", strconv.Itoa(number)+"\n")
	f.write(dir+"/start", strconv.FormatUint(start/512, 10)+"\n")
	f.write(dir+"/size", strconv.FormatUint(size/512, 10)+"\n")
	f.write(dir+"/uevent", fmt.Sprintf("MAJOR=254\nMINOR=%d\nDEVNAME=%s\nDEVTYPE=partition\nPARTN=%d\nPARTNAME=%s\n", number, part, number, name))
	f.write("/dev/"+part, "")
	f.link("/dev/disk/by-partuuid/"+uuid, "../../"+part)
}

func (f *fakeNode) link(p, target string) {
	f.t.Helper()
	full := filepath.Join(f.root, p)
	os.Remove(full)
	if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
		f.t.Fatal(err)
	}
	if err := os.Symlink(target, full); err != nil {
		f.t.Fatal(err)
	}
}

// reboot starts a new boot: no commands yet, no power cut; what is
// enabled runs again.
func (f *fakeNode) reboot() {
	f.ran, f.cutAt, f.cutAfter, f.halt, f.dead = nil, 0, false, nil, false
}

// cutPower arranges for the power to die in the n-th command of this boot
// (after its effect, or before), and returns the boot's context.
func (f *fakeNode) cutPower(n int, after bool) context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	f.t.Cleanup(cancel)
	f.cutAt, f.cutAfter, f.halt = n, after, cancel
	return ctx
}

// command is Storage.Command (and Env.Exec) of the fake node.
func (f *fakeNode) command(ctx context.Context, name string, args ...string) ([]byte, error) {
	if f.dead {
		return nil, errPowerCut
	}
	f.ran = append(f.ran, strings.Join(append([]string{name}, args...), " "))
	if f.cutAt != len(f.ran) {
		return f.do(ctx, name, args)
	}
	if f.cutAfter {
		f.do(ctx, name, args)
	}
	f.dead = true
	f.halt()
	return nil, errPowerCut
}

func (f *fakeNode) exists(p string) bool {
	_, err := os.Lstat(filepath.Join(f.root, p))
	return err == nil
}

func (f *fakeNode) read(p string) string {
	b, _ := os.ReadFile(filepath.Join(f.root, p))
	return string(b)
}

func (f *fakeNode) do(ctx context.Context, name string, args []string) ([]byte, error) {
	switch name {
	case "resize2fs", "chown":
		for _, a := range args {
			if strings.HasPrefix(a, "/var") && !f.exists(a) {
				return nil, fmt.Errorf("chown: %s: no such file", a)
			}
		}
		return nil, nil
	case "timedatectl":
		if f.timeSynced {
			return []byte("yes\n"), nil
		}
		return []byte("no\n"), nil
	case "monmaptool":
		if !slices.Contains(args, "--clobber") && f.exists(args[len(args)-1]) {
			return nil, errors.New("monmaptool: map exists, use --clobber")
		}
		f.write(args[len(args)-1], "monmap "+strings.Join(args[:len(args)-1], " ")+"\n")
		return nil, nil
	case "ceph-mon":
		return nil, f.mkfs(args)
	case "systemctl":
		return f.systemctl(args)
	case "ceph":
		return f.ceph(args)
	case "ceph-volume":
		return f.cephVolume(args)
	case "rados":
		return f.rados(ctx, args)
	}
	return nil, fmt.Errorf("%s: not faked", name)
}

func (f *fakeNode) mkfs(args []string) error {
	if !slices.Contains(args, "--mkfs") {
		return errors.New("ceph-mon: only --mkfs is faked")
	}
	if f.enabled["ceph-mon@"+f.host] {
		f.broken = append(f.broken, "ceph-mon --mkfs after the monitor was started")
	}
	ring := f.read(cephTmpMonKeyring)
	for _, e := range []string{"[mon.]", "[client.admin]", "[client.bootstrap-osd]"} {
		if !strings.Contains(ring, e) {
			return fmt.Errorf("ceph-mon: the mkfs keyring lacks %s", e)
		}
	}
	if !strings.Contains(f.read(cephTmpMonmap), "--fsid "+testFSID) {
		return errors.New("ceph-mon: no monmap of this cluster")
	}
	dir := monDir(f.host)
	// Like ceph-mon: a directory that is not empty is left alone, and
	// that is success.
	if ents, _ := os.ReadDir(filepath.Join(f.root, dir)); len(ents) > 0 {
		return nil
	}
	if f.cutAt == len(f.ran) { // the power dies while the store is written
		f.write(dir+"/store.db/000001.log", "half a store\n")
		return nil
	}
	f.write(dir+"/keyring", "[mon.]\n")
	f.write(dir+"/store.db/CURRENT", "MANIFEST-000001\n")
	f.write(dir+"/kv_backend", "rocksdb\n")
	return nil
}

func (f *fakeNode) systemctl(args []string) ([]byte, error) {
	switch {
	case len(args) == 3 && args[0] == "enable" && args[1] == "--now":
		if args[2] == "ceph-mon@"+f.host && !f.exists(monDir(f.host)+"/done") {
			f.broken = append(f.broken, "the monitor started before its store was made")
		}
		f.enabled[args[2]] = true
		return nil, nil
	case len(args) == 3 && args[0] == "is-active" && args[1] == "--quiet":
		if f.enabled[args[2]] {
			return nil, nil
		}
		return nil, errors.New("exit status 3")
	case len(args) > 1 && args[0] == "status":
		// What a failed timesyncd shows; status exits 3 for it.
		return []byte("× systemd-timesyncd.service - Network Time Synchronization\n     Active: failed (Result: exit-code)\n"), errors.New("exit status 3")
	}
	return nil, fmt.Errorf("systemctl %v: not faked", args)
}

func (f *fakeNode) quorate() bool { return f.enabled["ceph-mon@"+f.host] && f.peersUp }

func (f *fakeNode) ceph(args []string) ([]byte, error) {
	if len(args) < 2 || args[0] != "--connect-timeout" {
		return nil, errors.New("ceph: always with --connect-timeout, or it hangs without a quorum")
	}
	args = args[2:]
	if !f.quorate() {
		return nil, errors.New("[errno 110] RADOS timed out (error connecting to the cluster)")
	}
	cmd := strings.Join(args, " ")
	switch {
	case cmd == "quorum_status --format json":
		return json.Marshal(map[string]any{"election_epoch": 6, "quorum": []int{0, 1, 2},
			"quorum_names": []string{"ceph-1", "ceph-2", "ceph-3"}, "quorum_leader_name": "ceph-1"})
	case cmd == "config set mon auth_allow_insecure_global_id_reclaim false":
		return nil, nil
	case len(args) == 4 && args[0] == "auth" && args[1] == "import" && args[2] == "-i":
		if !strings.Contains(f.read(args[3]), "[mgr."+f.host+"]") {
			return nil, fmt.Errorf("auth import: %s holds no mgr.%s", args[3], f.host)
		}
		return nil, nil
	case cmd == "-s --format json":
		up := 0
		for _, o := range f.osds {
			if f.enabled["ceph-osd@"+strconv.Itoa(o.id)] {
				up++
			}
		}
		health, checks := "HEALTH_OK", map[string]any{}
		if up < len(f.osds) {
			health, checks = "HEALTH_WARN", map[string]any{"OSD_DOWN": map[string]any{"severity": "HEALTH_WARN"}}
		}
		return json.Marshal(map[string]any{
			"fsid": testFSID, "health": map[string]any{"status": health, "checks": checks, "mutes": []any{}},
			"quorum_names": []string{"ceph-1", "ceph-2", "ceph-3"}, "monmap": map[string]any{"epoch": 1, "num_mons": 3},
			"osdmap": map[string]any{"epoch": 9, "num_osds": len(f.osds), "num_up_osds": up, "num_in_osds": len(f.osds)},
			"mgrmap": map[string]any{"available": f.enabled["ceph-mgr@"+f.host], "num_standbys": 0},
		})
	case len(args) == 5 && strings.HasPrefix(cmd, "osd pool create "):
		if n, err := strconv.Atoi(args[4]); err != nil || n < 1 {
			return nil, fmt.Errorf("ceph: pg_num %q", args[4])
		}
		// A pool that exists is success: Ceph 16 says "pool 'NAME'
		// already exists" on standard error and exits 0.
		f.pool(args[3])
		return nil, nil
	case len(args) == 6 && strings.HasPrefix(cmd, "osd pool application enable "):
		p := f.pools[args[4]]
		if p == nil {
			return nil, fmt.Errorf("Error ENOENT: unrecognized pool '%s'", args[4])
		}
		if len(p.apps) > 0 && !p.apps[args[5]] {
			return nil, fmt.Errorf("Error EPERM: Are you SURE? Pool '%s' already has an enabled application; pass --yes-i-really-mean-it to proceed anyway", args[4])
		}
		p.apps[args[5]] = true
		return nil, nil
	}
	return nil, fmt.Errorf("ceph %s: not faked", cmd)
}

// pool is the pool name, made if there is none.
func (f *fakeNode) pool(name string) *fakePool {
	if f.pools[name] == nil {
		f.pools[name] = &fakePool{apps: map[string]bool{}, objects: map[string]string{}}
	}
	return f.pools[name]
}

// seedObject stores an object in the lab's pool as another storage node's
// self-test would have, the pool made and its application enabled.
func (f *fakeNode) seedObject(name, data string) {
	p := f.pool(selftestPool)
	p.apps[selftestApp] = true
	p.objects[name] = data
}

// rados is the rados CLI: put, ls and get in a pool of the fake cluster.
func (f *fakeNode) rados(ctx context.Context, args []string) ([]byte, error) {
	if _, ok := ctx.Deadline(); !ok {
		return nil, errors.New("rados: always under a deadline, or it hangs on a placement group that is not active")
	}
	if len(args) < 3 || args[0] != "-p" {
		return nil, fmt.Errorf("rados %v: not faked", args)
	}
	if !f.quorate() {
		return nil, errors.New("rados: couldn't connect to cluster: (110) Connection timed out")
	}
	p := f.pools[args[1]]
	if p == nil {
		return nil, fmt.Errorf("error opening pool %s: (2) No such file or directory", args[1])
	}
	block := func() error {
		<-ctx.Done()
		return errors.New("signal: killed")
	}
	switch {
	case len(args) == 3 && args[2] == "ls":
		var b strings.Builder
		for name := range p.objects { // in no particular order
			b.WriteString(name + "\n")
		}
		return []byte(b.String()), nil
	case len(args) == 5 && args[2] == "put":
		if f.pgsInactive {
			return nil, block()
		}
		data, err := os.ReadFile(filepath.Join(f.root, args[4]))
		if err != nil {
			return nil, fmt.Errorf("error reading input file %s: (2) No such file or directory", args[4])
		}
		p.objects[args[3]] = string(data)
		return nil, nil
	case len(args) == 5 && args[2] == "get":
		if f.pgsInactive {
			return nil, block()
		}
		data, ok := p.objects[args[3]]
		if !ok {
			return nil, fmt.Errorf("error getting %s/%s: (2) No such file or directory", args[1], args[3])
		}
		// Like rados: the file's directory must exist.
		if !f.exists(filepath.Dir(args[4])) {
			return nil, fmt.Errorf("failed to open file: (2) No such file or directory\nerror getting %s/%s: (2) No such file or directory", args[1], args[3])
		}
		f.write(args[4], data)
		return nil, nil
	}
	return nil, fmt.Errorf("rados %v: not faked", args)
}

func (f *fakeNode) cephVolume(args []string) ([]byte, error) {
	cmd := strings.Join(args, " ")
	switch {
	case cmd == "lvm list --format json":
		report := map[string][]map[string]any{}
		for dev, o := range f.osds {
			id := strconv.Itoa(o.id)
			report[id] = append(report[id], map[string]any{
				"devices": []string{dev}, "type": "block", "lv_name": "osd-block-" + o.osdFSID,
				"tags": map[string]string{"ceph.cluster_fsid": o.clusterFSID, "ceph.osd_fsid": o.osdFSID, "ceph.osd_id": id, "ceph.type": "block"},
			})
		}
		return json.MarshalIndent(report, "", "    ")
	case strings.HasPrefix(cmd, "lvm create --bluestore --data "):
		dev := args[len(args)-1]
		if _, ok := f.osds[dev]; ok {
			f.broken = append(f.broken, "ceph-volume lvm create on "+dev+", which holds an OSD")
			return nil, fmt.Errorf("ceph-volume: %s is already used", dev)
		}
		if !strings.Contains(f.read(roles.CephConfPath), "fsid = "+testFSID) {
			return nil, errors.New("ceph-volume: no fsid in ceph.conf")
		}
		if !strings.Contains(f.read(cephBootstrapOSDRing), "[client.bootstrap-osd]") {
			return nil, errors.New("ceph-volume: no bootstrap-osd keyring")
		}
		if !f.quorate() {
			return nil, errors.New("ceph-volume: RADOS timed out")
		}
		o := &fakeOSD{id: f.nextOSD, clusterFSID: testFSID, osdFSID: fmt.Sprintf("00000000-0000-4000-8000-%012d", f.nextOSD)}
		f.nextOSD++
		f.osds[dev] = o
		f.enabled["ceph-osd@"+strconv.Itoa(o.id)] = true
		return nil, nil
	case strings.HasPrefix(cmd, "lvm activate --bluestore "):
		f.enabled["ceph-osd@"+args[3]] = true
		return nil, nil
	}
	return nil, fmt.Errorf("ceph-volume %s: not faked", cmd)
}

// tree lists every file under root with its mode and contents, for
// comparing end states.
func (f *fakeNode) tree() string {
	var b strings.Builder
	filepath.WalkDir(f.root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(f.root, p)
		info, _ := os.Lstat(p)
		switch {
		case info.Mode()&fs.ModeSymlink != 0:
			t, _ := os.Readlink(p)
			fmt.Fprintf(&b, "%s -> %s\n", rel, t)
		case d.IsDir():
			fmt.Fprintf(&b, "%s/ %v\n", rel, info.Mode().Perm())
		default:
			data, _ := os.ReadFile(p)
			fmt.Fprintf(&b, "%s %v %q\n", rel, info.Mode().Perm(), data)
		}
		return nil
	})
	return b.String()
}

// state is the node's persistent state besides its files.
func (f *fakeNode) state() string {
	var units []string
	for u, on := range f.enabled {
		if on {
			units = append(units, u)
		}
	}
	slices.Sort(units)
	var osds []string
	for dev, o := range f.osds {
		osds = append(osds, fmt.Sprintf("%s:%s", dev, o.clusterFSID))
	}
	slices.Sort(osds)
	var pools []string
	for name, p := range f.pools {
		var apps, objs []string
		for a, on := range p.apps {
			if on {
				apps = append(apps, a)
			}
		}
		for o, data := range p.objects {
			objs = append(objs, fmt.Sprintf("%s=%q", o, data))
		}
		slices.Sort(apps)
		slices.Sort(objs)
		pools = append(pools, fmt.Sprintf("%s apps %v objects %v", name, apps, objs))
	}
	slices.Sort(pools)
	return fmt.Sprintf("units %v\nosds %v\npools %v\n", units, osds, pools)
}
