package efiboot

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"slices"

	"github.com/u-root/u-root/pkg/efivarfs"
)

// ErrNoNetbootEntry: no boot entry PXE-boots over IPv4 from the machine's
// netboot NIC, so the role OS cannot send its next boot to the gate.
var ErrNoNetbootEntry = errors.New("no IPv4 PXE boot entry for the netboot NIC")

// NetbootEntry finds the entry that PXE-boots over IPv4 from the NIC with
// mac: a device path with that MAC(…) node and an IPv4(…) node, and no
// URI(…) node (that is HTTP boot, which the gate does not serve). Entries
// in BootOrder come first, in its order, then the others by number.
// Matching the device path, not remembering a number, survives a firmware
// that renumbers its network entries when it enumerates them again.
func NetbootEntry(v efivarfs.EFIVar, mac string) (uint16, error) {
	hw, err := net.ParseMAC(mac)
	if err != nil {
		return 0, fmt.Errorf("netboot MAC %q: %w", mac, err)
	}
	entries, err := bootEntries(v)
	if err != nil {
		return 0, err
	}
	order, err := readUint16s(v, "BootOrder")
	if err != nil && !errors.Is(err, efivarfs.ErrVarNotExist) {
		return 0, fmt.Errorf("read BootOrder: %w", err)
	}
	rest := make([]uint16, 0, len(entries))
	for n := range entries {
		if !slices.Contains(order, n) {
			rest = append(rest, n)
		}
	}
	slices.Sort(rest)
	for _, n := range append(order, rest...) {
		if opt, ok := entries[n]; ok && pxe4(opt, hw) {
			return n, nil
		}
	}
	return 0, fmt.Errorf("%w %s", ErrNoNetbootEntry, hw)
}

// Device path node types and subtypes (UEFI 2.10 §10.3) that say how an
// entry boots.
const (
	nodeMessaging = 3
	subMAC        = 11
	subIPv4       = 12
	subURI        = 24
	nodeEnd       = 0x7f
)

// pxe4 says whether load option opt boots PXE over IPv4 from hw.
func pxe4(opt []byte, hw net.HardwareAddr) bool {
	_, path, _ := splitOption(opt)
	if path == nil {
		return false
	}
	var mac, ipv4, uri bool
	for len(path) >= 4 {
		typ, sub, n := path[0], path[1], int(binary.LittleEndian.Uint16(path[2:]))
		if n < 4 || n > len(path) || typ == nodeEnd {
			break
		}
		node := path[4:n]
		if typ == nodeMessaging {
			switch sub {
			case subMAC:
				// 32 bytes of address, the first len(hw) of them used.
				mac = mac || (len(node) >= len(hw) && bytes.Equal(node[:len(hw)], hw))
			case subIPv4:
				ipv4 = true
			case subURI:
				uri = true
			}
		}
		path = path[n:]
	}
	return mac && ipv4 && !uri
}

// NetbootNext makes the firmware's next boot, that one only, the machine's
// IPv4 PXE entry (NetbootEntry), by BootNext: how a re-armed machine whose
// disk comes first reaches the gate's installer. It returns the entry and
// whether BootNext had to be written (false: it named that entry already).
func NetbootNext(v efivarfs.EFIVar, mac string) (uint16, bool, error) {
	n, err := NetbootEntry(v, mac)
	if err != nil {
		return 0, false, err
	}
	if next, err := readUint16s(v, "BootNext"); err == nil && slices.Equal(next, []uint16{n}) {
		return n, false, nil
	}
	if err := v.Set(desc("BootNext"), attrs, uint16s([]uint16{n})); err != nil {
		return 0, false, fmt.Errorf("write BootNext: %w", err)
	}
	return n, true, nil
}

// NetbootsNext says whether BootNext names the machine's IPv4 PXE entry:
// its next boot goes to the gate.
func NetbootsNext(v efivarfs.EFIVar, mac string) (bool, error) {
	next, err := readUint16s(v, "BootNext")
	if errors.Is(err, efivarfs.ErrVarNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read BootNext: %w", err)
	}
	if len(next) != 1 {
		return false, nil
	}
	n, err := NetbootEntry(v, mac)
	if err != nil {
		return false, err
	}
	return next[0] == n, nil
}
