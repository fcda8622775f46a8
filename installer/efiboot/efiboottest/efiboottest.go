// Package efiboottest is an in-memory UEFI variable store for tests, with
// the boot entries of a freshly netbooted OVMF machine.
package efiboottest

import (
	"encoding/binary"
	"fmt"
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

// OVMF is the store of an OVMF machine that netbooted from its first NIC
// (BootCurrent 0002): entries 0000..0005 are the UI app, the disk, then
// PXEv4, PXEv6, HTTPv4 and HTTPv6, in that order.
func OVMF() Vars {
	v := Vars{
		Desc("BootCurrent"): Uint16s(2),
		Desc("BootOrder"):   Uint16s(0, 1, 2, 3, 4, 5),
	}
	for n, d := range []string{"UiApp", "UEFI Misc Device", "UEFI PXEv4", "UEFI PXEv6", "UEFI HTTPv4", "UEFI HTTPv6"} {
		opt := binary.LittleEndian.AppendUint32(nil, 1)
		opt = binary.LittleEndian.AppendUint16(opt, 4)
		for _, c := range utf16.Encode([]rune(d)) {
			opt = binary.LittleEndian.AppendUint16(opt, c)
		}
		opt = append(opt, 0, 0)
		v[Desc(fmt.Sprintf("Boot%04X", n))] = append(opt, 0x7f, 0xff, 4, 0)
	}
	return v
}

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
