package profiles

// The Ceph cluster a lab's storage machines form, as far as a profile
// decides it: which devices are OSDs, how many copies pools keep, and how
// much memory each OSD may use. Validation warns with these rules and
// package roles renders ceph.conf with the same ones, so both agree by
// construction.
//
// Every storage machine runs a monitor and a manager, so the monitors are
// the storage machines: 1 or 3 and more form a quorum that survives what it
// claims (3 survive the loss of one, 5 of two). Two monitors need each
// other (a quorum is a strict majority, 2 of 2), so a lab of two storage
// machines stops when either is down: it is valid, with a warning, as is a
// single node. An even count above two tolerates no more failures than the
// odd count below it, which costs nothing worth a warning.

// OSD is one of a storage machine's OSD devices: a data disk, whole, or
// the data partition of its system disk (the space after system_size).
type OSD struct {
	Disk *Disk
	// Part is the data partition's extent on Disk; nil for a whole disk.
	Part *Extent
}

// StorageOSDs lists machine m's OSD devices in disk order, as the plan
// lays them out: the system disk's data partition when system_size leaves
// room for one, and every data disk, whole. m's disks must lay out (a
// validated profile's do).
func StorageOSDs(m *Machine) []OSD {
	var out []OSD
	for i := range m.Disks {
		d := &m.Disks[i]
		switch d.Use {
		case UseData:
			out = append(out, OSD{Disk: d})
		case UseSystem:
			x, err := SystemSlices(d.Size, d.SystemSize)
			if err == nil && x.Data.Size > 0 {
				out = append(out, OSD{Disk: d, Part: &x.Data})
			}
		}
	}
	return out
}

// Replication is how Ceph's pools keep copies by default.
type Replication struct {
	Size    int // copies of each object (osd_pool_default_size)
	MinSize int // copies below which writes stop (osd_pool_default_min_size)
	// ChooseleafType is CRUSH's failure domain for the copies
	// (osd_crush_chooseleaf_type): 1, host, puts each copy on another
	// machine; 0, OSD, lets a single machine hold them all.
	ChooseleafType int
}

// CephReplication is the replication of a lab with nodes storage machines:
// three copies on three hosts, writing on with two, from three nodes on;
// one copy per node below that (two nodes: two copies, writing on with one
// so that the survivor of a node loss still writes, for as long as the
// monitors have a quorum, i.e. not at all with two monitors; one node:
// one copy, and OSDs as the failure domain).
func CephReplication(nodes int) Replication {
	switch {
	case nodes >= 3:
		return Replication{Size: 3, MinSize: 2, ChooseleafType: 1}
	case nodes == 2:
		return Replication{Size: 2, MinSize: 1, ChooseleafType: 1}
	default:
		return Replication{Size: 1, MinSize: 1, ChooseleafType: 0}
	}
}

// Memory sizing of a storage machine's OSDs.
const (
	// MinMemory is the least memory a machine may be given: a Debian
	// role OS does not run in less, and less is most likely a size
	// written without its unit.
	MinMemory = 512 * MiB
	// MinOSDMemoryTarget is the smallest osd_memory_target Ceph accepts
	// (the option's minimum, 896 MiB).
	MinOSDMemoryTarget = 896 * MiB
	// DefaultOSDMemoryTarget is Ceph's default osd_memory_target; kiln
	// never sets more, it only lowers the target to fit a machine.
	DefaultOSDMemoryTarget = 4 * GiB
	// StorageReserve is the memory a storage machine keeps for all but
	// its OSDs: the OS, Consul and Vault (about 1 GiB), the monitor
	// (about 1 GiB in a small cluster), the manager (about 1 GiB) and
	// the page cache.
	StorageReserve = 4 * GiB
)

// OSDMemoryTarget is the osd_memory_target of each of osds OSDs on a
// storage machine with the given memory:
//
//	(memory - StorageReserve) × 3/4 / osds, rounded down to a MiB,
//	at least MinOSDMemoryTarget, at most DefaultOSDMemoryTarget.
//
// The 3/4 is headroom: the target steers the OSD's caches, it is not a
// limit, and an OSD's resident memory overshoots it, most during recovery.
// fits is false when the floor had to be applied, i.e. the machine has
// less memory than its OSDs, monitor and manager want (MinStorageMemory).
// memory must be non-zero and osds positive.
func OSDMemoryTarget(memory Size, osds int) (target Size, fits bool) {
	if osds <= 0 || memory <= StorageReserve {
		return MinOSDMemoryTarget, false
	}
	t := uint64(memory-StorageReserve) * 3 / 4 / uint64(osds) / MiB * MiB
	switch {
	case t < MinOSDMemoryTarget:
		return MinOSDMemoryTarget, false
	case t > DefaultOSDMemoryTarget:
		return DefaultOSDMemoryTarget, true
	}
	return Size(t), true
}

// MinStorageMemory is the least memory for which OSDMemoryTarget fits osds
// OSDs, rounded up to a MiB.
func MinStorageMemory(osds int) Size {
	need := (uint64(MinOSDMemoryTarget)*uint64(osds)*4 + 2) / 3
	return Size(StorageReserve + (need+MiB-1)/MiB*MiB)
}

// storage checks the storage machines together: the monitor quorum they
// form, whether their OSDs can hold every copy, and each one's memory.
// None of it makes a profile invalid: a lab may start small.
func (v *validator) storage() {
	var nodes []int
	for i := range v.p.Machines {
		if v.p.Machines[i].Role == RoleStorage {
			nodes = append(nodes, i)
		}
	}
	if len(nodes) == 0 {
		return
	}
	r := CephReplication(len(nodes))
	switch len(nodes) {
	case 1:
		v.ps.warn(field("machines", nodes[0])+".role",
			"the only storage node: Ceph keeps one copy of each object and stops with this machine; three storage nodes survive the loss of one")
	case 2:
		v.ps.warn(field("machines", nodes[1])+".role",
			"one of two storage nodes (with %s): two Ceph monitors need each other for a quorum, so the cluster stops when either machine is down (pools keep 2 copies, min_size 1); three storage nodes survive the loss of one",
			v.p.Machines[nodes[0]].Name)
	}
	total, hosts := 0, 0
	for _, i := range nodes {
		m := &v.p.Machines[i]
		osds := StorageOSDs(m)
		if len(osds) > 0 {
			hosts++
		}
		total += len(osds)
		if m.Memory != 0 && len(osds) > 0 {
			if _, fits := OSDMemoryTarget(m.Memory, len(osds)); !fits {
				v.ps.warn(field("machines", i)+".memory",
					"%s leaves each of the %d OSDs less than Ceph's minimum osd_memory_target (%s) once %s is kept for the system, Consul, Vault, the monitor and the manager: kiln sets the minimum, and the machine may run out of memory during recovery; give it at least %s, or fewer OSDs",
					m.Memory, len(osds), Size(MinOSDMemoryTarget), Size(StorageReserve), MinStorageMemory(len(osds)))
			}
		}
	}
	const osdHint = "a data disk, or a system_size that leaves room after the OS"
	switch {
	case r.ChooseleafType == 0 && total == 0:
		v.ps.warn(field("machines", nodes[0])+".disks", "the storage node has no OSD, so Ceph has nowhere to keep data: give it %s", osdHint)
	case r.ChooseleafType == 1 && hosts < r.Size:
		v.ps.warn("machines", "%d of the %d storage nodes have an OSD, fewer than the %d copies of each object Ceph keeps, one per host: placement groups stay undersized (HEALTH_WARN); give more storage nodes an OSD (%s)",
			hosts, len(nodes), r.Size, osdHint)
	}
}
