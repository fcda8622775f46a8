// Package efiboottest is an in-memory UEFI variable store for tests, with
// the boot entries of a freshly netbooted OVMF machine.
package efiboottest

import (
	"encoding/binary"
	"fmt"
	"net"
	"slices"
	"unicode/utf16"

	"github.com/google/uuid"
	"github.com/u-root/u-root/pkg/efivarfs"
)

// Global is EFI_GLOBAL_VARIABLE.
var Global = uuid.MustParse("8be4df61-93ca-11d2-aa0d-00e098032b8c")

// Vars is an in-memory variable store; every write must carry Attrs.
type Vars map[efivarfs.VariableDescriptor][]byte

// Attrs are the attributes Boot#### and BootOrder are written with.
const Attrs = efivarfs.AttributeNonVolatile | efivarfs.AttributeBootserviceAccess | efivarfs.AttributeRuntimeAccess

// MAC is the NIC the OVMF store's network entries boot from.
const MAC = "52:54:00:12:34:56"

// OVMF is the store of an OVMF machine that netbooted from its first NIC
// (BootCurrent 0002): entries 0000..0005 are the UI app, the disk, then
// PXEv4, PXEv6, HTTPv4 and HTTPv6 on NIC MAC, in that order, with the
// device paths OVMF gives them.
func OVMF() Vars {
	v := Vars{
		Desc("BootCurrent"): Uint16s(2),
		Desc("BootOrder"):   Uint16s(0, 1, 2, 3, 4, 5),
	}
	nic := NIC(MAC)
	for n, e := range []struct {
		desc  string
		nodes [][]byte
	}{
		{"UiApp", nil},
		{"UEFI Misc Device", nil},
		{"UEFI PXEv4", append(nic, IPv4())},
		{"UEFI PXEv6", append(nic, Node(3, 13, make([]byte, 56)))},
		{"UEFI HTTPv4", append(nic, IPv4(), Node(3, 24, nil))},
		{"UEFI HTTPv6", append(nic, Node(3, 13, make([]byte, 56)), Node(3, 24, nil))},
	} {
		v[Desc(fmt.Sprintf("Boot%04X", n))] = LoadOption(e.desc, e.nodes...)
	}
	return v
}

// LoadOption is an active EFI_LOAD_OPTION of the device path nodes.
func LoadOption(desc string, nodes ...[]byte) []byte {
	var path []byte
	for _, n := range nodes {
		path = append(path, n...)
	}
	path = append(path, 0x7f, 0xff, 4, 0)
	opt := binary.LittleEndian.AppendUint32(nil, 1)
	opt = binary.LittleEndian.AppendUint16(opt, uint16(len(path)))
	for _, c := range utf16.Encode([]rune(desc)) {
		opt = binary.LittleEndian.AppendUint16(opt, c)
	}
	opt = append(opt, 0, 0)
	return append(opt, path...)
}

// Node is a device path node.
func Node(typ, sub byte, data []byte) []byte {
	n := []byte{typ, sub, 0, 0}
	binary.LittleEndian.PutUint16(n[2:], uint16(4+len(data)))
	return append(n, data...)
}

// NIC is the nodes of a PCI NIC with address mac: ACPI(PNP0A03,0)/
// PCI(0x3,0x0)/MAC(mac,0x1).
func NIC(mac string) [][]byte {
	hw, err := net.ParseMAC(mac)
	if err != nil {
		hw = make(net.HardwareAddr, 6)
	}
	addr := make([]byte, 33)
	copy(addr, hw)
	addr[32] = 1 // Ethernet
	return [][]byte{
		Node(2, 1, []byte{0xd0, 0x41, 0x03, 0x0a, 0, 0, 0, 0}),
		Node(1, 1, []byte{0, 3}),
		Node(3, 11, addr),
	}
}

// IPv4 is an IPv4(0.0.0.0, DHCP) node.
func IPv4() []byte { return Node(3, 12, make([]byte, 23)) }

// Desc names a global variable.
func Desc(name string) efivarfs.VariableDescriptor {
	return efivarfs.VariableDescriptor{Name: name, GUID: Global}
}

// Uint16s is a BootOrder-like value.
func Uint16s(ns ...uint16) []byte {
	var b []byte
	for _, n := range ns {
		b = binary.LittleEndian.AppendUint16(b, n)
	}
	return b
}

// Order reads BootOrder back.
func (v Vars) Order() []uint16 {
	data := v[Desc("BootOrder")]
	out := make([]uint16, len(data)/2)
	for i := range out {
		out[i] = binary.LittleEndian.Uint16(data[2*i:])
	}
	return out
}

func (v Vars) Get(d efivarfs.VariableDescriptor) (efivarfs.VariableAttributes, []byte, error) {
	data, ok := v[d]
	if !ok {
		return 0, nil, efivarfs.ErrVarNotExist
	}
	return Attrs, slices.Clone(data), nil
}

func (v Vars) List() ([]efivarfs.VariableDescriptor, error) {
	var out []efivarfs.VariableDescriptor
	for d := range v {
		out = append(out, d)
	}
	return out, nil
}

func (v Vars) Remove(d efivarfs.VariableDescriptor) error { delete(v, d); return nil }

func (v Vars) Set(d efivarfs.VariableDescriptor, a efivarfs.VariableAttributes, data []byte) error {
	if a != Attrs {
		return fmt.Errorf("%s written with attributes %#x", d.Name, a)
	}
	v[d] = slices.Clone(data)
	return nil
}

// Clone is a deep copy.
func (v Vars) Clone() Vars {
	out := Vars{}
	for d, data := range v {
		out[d] = slices.Clone(data)
	}
	return out
}
