//go:build linux && !amd64

package main

import "errors"

// There is no int 0x80 entry point off amd64.
const haveInt80 = false

func int80(nr, a1, a2, a3, a4, a5 uintptr) uintptr { panic("no int 0x80 off amd64") }

func low32Page() ([]byte, error) { return nil, errors.ErrUnsupported }
