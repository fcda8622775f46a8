// Package efiboot owns what kiln tells a UEFI machine's firmware: the
// installer's boot entry for the installed disk, first in the boot order
// with the network entry the machine netbooted from right behind it; and
// the role OS's one-time netboot (BootNext) when the gate has re-armed the
// machine.
//
// Disk first: a firmware's default list holds several network entries
// (PXE over IPv4 and IPv6, HTTP boot over both), and each power-on that
// goes through them first costs their DHCP waits, the iPXE binary and its
// way back out to the disk: about ten seconds on OVMF at every power-on
// of an installed machine, minutes on some real firmware. The network
// stays second, so a disk that cannot boot (an install cut short clears
// the old boot loader first) still falls to the gate. A healthy machine
// the operator re-arms (kiln gate reinstall) hears it from the gate in its
// next health report, and its OS sets BootNext to the network entry: the
// next power-on, and that one only, netboots and installs.
//
// Nothing is removed: other entries keep their numbers and their relative
// order, behind these two.
package efiboot

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode/utf16"

	"github.com/google/uuid"
	"github.com/u-root/u-root/pkg/efivarfs"

	"github.com/kilnlab/kiln/plan"
)

// globalVariable is EFI_GLOBAL_VARIABLE, the vendor GUID of Boot####,
// BootOrder, BootCurrent and BootNext.
var globalVariable = uuid.MustParse("8be4df61-93ca-11d2-aa0d-00e098032b8c")

// attrs are the attributes the UEFI specification requires of Boot####
// and BootOrder.
const attrs = efivarfs.AttributeNonVolatile | efivarfs.AttributeBootserviceAccess | efivarfs.AttributeRuntimeAccess

// loadOptionActive is LOAD_OPTION_ACTIVE.
const loadOptionActive = 0x1

// Entry is the boot entry for an installed disk.
type Entry struct {
	// Description is what the firmware's boot menu shows.
	Description string
	// ESP is the EFI system partition, as planned (its number, place and
	// unique GUID are what the firmware matches on the disk).
	ESP plan.Partition
	// SectorSize is the disk's logical sector size in bytes.
	SectorSize uint64
	// Loader is the bootloader's path on the ESP, with forward slashes.
	Loader string
}

// LoadOption encodes e as an EFI_LOAD_OPTION (UEFI 2.10 §3.1.3): active,
// the description, and a short-form device path HD(…)/File(…) that the
// firmware expands by finding the partition's GUID on any disk, the way
// efibootmgr writes entries.
func (e Entry) LoadOption() ([]byte, error) {
	if e.SectorSize == 0 || e.ESP.Start%e.SectorSize != 0 || e.ESP.Size%e.SectorSize != 0 {
		return nil, fmt.Errorf("ESP %s: start %d and size %d are not whole %d-byte sectors", e.ESP.Name, e.ESP.Start, e.ESP.Size, e.SectorSize)
	}
	sig, err := efiGUID(e.ESP.GUID)
	if err != nil {
		return nil, fmt.Errorf("ESP %s: %w", e.ESP.Name, err)
	}
	var path bytes.Buffer
	// HARDDRIVE_DEVICE_PATH: media (4), hard drive (1), 42 bytes.
	hd := make([]byte, 42)
	hd[0], hd[1] = 4, 1
	binary.LittleEndian.PutUint16(hd[2:], 42)
	binary.LittleEndian.PutUint32(hd[4:], uint32(e.ESP.Number))
	binary.LittleEndian.PutUint64(hd[8:], e.ESP.Start/e.SectorSize)
	binary.LittleEndian.PutUint64(hd[16:], e.ESP.Size/e.SectorSize)
	copy(hd[24:40], sig[:])
	hd[40] = 2 // partition format: GPT
	hd[41] = 2 // signature type: GUID
	path.Write(hd)
	// FILEPATH_DEVICE_PATH: media (4), file path (4), a NUL-ended UCS-2
	// path with backslashes.
	file := ucs2(strings.ReplaceAll(e.Loader, "/", `\`))
	node := make([]byte, 4, 4+len(file))
	node[0], node[1] = 4, 4
	binary.LittleEndian.PutUint16(node[2:], uint16(4+len(file)))
	path.Write(append(node, file...))
	// End of the whole device path.
	path.Write([]byte{0x7f, 0xff, 4, 0})

	var opt bytes.Buffer
	binary.Write(&opt, binary.LittleEndian, uint32(loadOptionActive))
	binary.Write(&opt, binary.LittleEndian, uint16(path.Len()))
	opt.Write(ucs2(e.Description))
	opt.Write(path.Bytes())
	return opt.Bytes(), nil
}

// ucs2 is s in UTF-16LE with a NUL at the end.
func ucs2(s string) []byte {
	u := utf16.Encode([]rune(s))
	b := make([]byte, 0, 2*len(u)+2)
	for _, c := range u {
		b = binary.LittleEndian.AppendUint16(b, c)
	}
	return append(b, 0, 0)
}

// efiGUID is s in the byte order of EFI_GUID: its first three fields
// little-endian (a GPT on disk stores GUIDs the same way).
func efiGUID(s string) ([16]byte, error) {
	u, err := uuid.Parse(s)
	if err != nil {
		return [16]byte{}, fmt.Errorf("partition GUID %q: %w", s, err)
	}
	g := [16]byte(u)
	slices.Reverse(g[0:4])
	slices.Reverse(g[4:6])
	slices.Reverse(g[6:8])
	return g, nil
}

// ErrNoBootCurrent: the firmware does not say which entry it booted, so
// there is no netboot entry to keep behind the disk.
var ErrNoBootCurrent = errors.New("the firmware has no BootCurrent")

// Result says what Place did.
type Result struct {
	Number  uint16   // the disk's Boot#### number
	Created bool     // false: an identical entry was there already
	Before  []uint16 // BootOrder as it was
	After   []uint16 // BootOrder as it is now
}

// Place writes e's entry, reusing an identical one or one with the same
// description (an earlier install of this machine), then sets BootOrder
// to e, BootCurrent (the netboot that started this install), and every
// other entry in its earlier order.
func Place(v efivarfs.EFIVar, e Entry) (Result, error) {
	opt, err := e.LoadOption()
	if err != nil {
		return Result{}, err
	}
	current, err := readUint16s(v, "BootCurrent")
	if err != nil || len(current) != 1 {
		return Result{}, ErrNoBootCurrent
	}
	order, err := readUint16s(v, "BootOrder")
	if err != nil && !errors.Is(err, efivarfs.ErrVarNotExist) {
		return Result{}, fmt.Errorf("read BootOrder: %w", err)
	}
	entries, err := bootEntries(v)
	if err != nil {
		return Result{}, err
	}
	r := Result{Before: order}
	num, found := match(entries, opt, e.Description)
	if !found || !bytes.Equal(entries[num], opt) {
		if !found {
			num, err = free(entries)
			if err != nil {
				return Result{}, err
			}
		}
		if err := v.Set(desc(bootName(num)), attrs, opt); err != nil {
			return Result{}, fmt.Errorf("write %s: %w", bootName(num), err)
		}
		r.Created = true
	}
	r.Number = num
	r.After = reorder(order, num, current[0])
	if !slices.Equal(r.After, order) {
		if err := v.Set(desc("BootOrder"), attrs, uint16s(r.After)); err != nil {
			return Result{}, fmt.Errorf("write BootOrder: %w", err)
		}
	}
	return r, nil
}

// match finds the entry equal to opt, or else one described as desc.
func match(entries map[uint16][]byte, opt []byte, desc string) (uint16, bool) {
	var byName []uint16
	for n, data := range entries {
		if bytes.Equal(data, opt) {
			return n, true
		}
		if d, ok := description(data); ok && d == desc {
			byName = append(byName, n)
		}
	}
	if len(byName) == 0 {
		return 0, false
	}
	return slices.Min(byName), true
}

// reorder puts first and then second at the head of order, the rest
// after them as they were.
func reorder(order []uint16, first, second uint16) []uint16 {
	out := []uint16{first}
	if second != first {
		out = append(out, second)
	}
	for _, n := range order {
		if n != first && n != second {
			out = append(out, n)
		}
	}
	return out
}

// free is the lowest Boot#### number not in use.
func free(entries map[uint16][]byte) (uint16, error) {
	for n := range uint16(0xffff) {
		if _, used := entries[n]; !used {
			return n, nil
		}
	}
	return 0, errors.New("every Boot#### number is taken")
}

// bootEntries reads every Boot#### variable.
func bootEntries(v efivarfs.EFIVar) (map[uint16][]byte, error) {
	list, err := v.List()
	if err != nil {
		return nil, fmt.Errorf("list EFI variables: %w", err)
	}
	out := map[uint16][]byte{}
	for _, d := range list {
		var n uint16
		if d.GUID != globalVariable || len(d.Name) != 8 || !strings.HasPrefix(d.Name, "Boot") {
			continue
		}
		if _, err := fmt.Sscanf(d.Name[4:], "%04X", &n); err != nil || bootName(n) != d.Name {
			continue
		}
		_, data, err := v.Get(d)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", d.Name, err)
		}
		out[n] = data
	}
	return out, nil
}

// description is a load option's description, if it parses.
func description(opt []byte) (string, bool) {
	d, _, ok := splitOption(opt)
	return d, ok
}

// splitOption splits an EFI_LOAD_OPTION into its description and its
// device path list (after the attributes, the path list's length and the
// NUL-ended UCS-2 description); ok says the description parsed, and the
// path is nil when the option is too short to hold it.
func splitOption(opt []byte) (string, []byte, bool) {
	if len(opt) < 6 {
		return "", nil, false
	}
	n := int(binary.LittleEndian.Uint16(opt[4:]))
	var u []uint16
	for i := 6; i+1 < len(opt); i += 2 {
		c := binary.LittleEndian.Uint16(opt[i:])
		if c != 0 {
			u = append(u, c)
			continue
		}
		var path []byte
		if start := i + 2; start+n <= len(opt) {
			path = opt[start : start+n]
		}
		return string(utf16.Decode(u)), path, true
	}
	return "", nil, false
}

func readUint16s(v efivarfs.EFIVar, name string) ([]uint16, error) {
	_, data, err := v.Get(desc(name))
	if err != nil {
		return nil, err
	}
	if len(data)%2 != 0 {
		return nil, fmt.Errorf("%s: odd length %d", name, len(data))
	}
	out := make([]uint16, len(data)/2)
	for i := range out {
		out[i] = binary.LittleEndian.Uint16(data[2*i:])
	}
	return out, nil
}

func uint16s(ns []uint16) []byte {
	b := make([]byte, 0, 2*len(ns))
	for _, n := range ns {
		b = binary.LittleEndian.AppendUint16(b, n)
	}
	return b
}

func bootName(n uint16) string { return fmt.Sprintf("Boot%04X", n) }

func desc(name string) efivarfs.VariableDescriptor {
	return efivarfs.VariableDescriptor{Name: name, GUID: globalVariable}
}

// Names formats boot numbers as the firmware names them, for messages.
func Names(ns []uint16) string {
	s := make([]string, len(ns))
	for i, n := range ns {
		s[i] = fmt.Sprintf("%04X", n)
	}
	return strings.Join(s, ",")
}
