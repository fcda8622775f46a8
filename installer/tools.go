//go:build tools

// Package installer holds the kiln initramfs's programs. This file only
// pins, in go.mod and go.sum, the u-root commands that image/initramfs
// builds into the initramfs: mkuimage resolves command packages with
// `go list` inside this module, so each must be importable from it.
package installer

import (
	_ "github.com/u-root/u-root/cmds/core/cat"
	_ "github.com/u-root/u-root/cmds/core/dmesg"
	_ "github.com/u-root/u-root/cmds/core/gosh"
	_ "github.com/u-root/u-root/cmds/core/init"
	_ "github.com/u-root/u-root/cmds/core/ip"
	_ "github.com/u-root/u-root/cmds/core/ls"
	_ "github.com/u-root/u-root/cmds/core/mount"
	_ "github.com/u-root/u-root/cmds/core/poweroff"
	_ "github.com/u-root/u-root/cmds/core/shutdown"
)
