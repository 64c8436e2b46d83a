//go:build linux

#include "textflag.h"

// func rawVfork(flags uintptr) (pid uintptr, errno uintptr)
//
// clone(flags) for CLONE_VM|CLONE_VFORK: the child runs on the parent's
// stack until it calls execve or exits, so the return address is kept in a
// register, not on that stack, where the child would overwrite it.
TEXT ·rawVfork(SB),NOSPLIT|NOFRAME,$0-24
	MOVQ	flags+0(FP), DI
	MOVQ	$0, SI
	MOVQ	$0, DX
	MOVQ	$0, R10
	MOVQ	$0, R8
	MOVQ	$0, R9
	MOVQ	$56, AX // SYS_clone
	POPQ	R12
	SYSCALL
	PUSHQ	R12
	CMPQ	AX, $0xfffffffffffff001
	JLS	ok
	MOVQ	$-1, pid+8(FP)
	NEGQ	AX
	MOVQ	AX, errno+16(FP)
	RET
ok:
	MOVQ	AX, pid+8(FP)
	MOVQ	$0, errno+16(FP)
	RET

// func rawVfork3(args unsafe.Pointer, size uintptr) (pid uintptr, errno uintptr)
//
// clone3(args, size), made safe for CLONE_VM|CLONE_VFORK as rawVfork is.
TEXT ·rawVfork3(SB),NOSPLIT|NOFRAME,$0-32
	MOVQ	args+0(FP), DI
	MOVQ	size+8(FP), SI
	MOVQ	$0, DX
	MOVQ	$0, R10
	MOVQ	$0, R8
	MOVQ	$0, R9
	MOVQ	$435, AX // SYS_clone3
	POPQ	R12
	SYSCALL
	PUSHQ	R12
	CMPQ	AX, $0xfffffffffffff001
	JLS	ok3
	MOVQ	$-1, pid+16(FP)
	NEGQ	AX
	MOVQ	AX, errno+24(FP)
	RET
ok3:
	MOVQ	AX, pid+16(FP)
	MOVQ	$0, errno+24(FP)
	RET

// func rawCloneOn(flags, stack, ptid uintptr, fn uintptr, arg unsafe.Pointer) (pid uintptr, errno uintptr)
//
// clone(flags, stack, ptid) whose child, on the new stack, calls the ABI0
// function at fn with arg, and exits with status 1 if it returns.
TEXT ·rawCloneOn(SB),NOSPLIT,$0-56
	MOVQ	flags+0(FP), DI
	MOVQ	stack+8(FP), SI
	MOVQ	ptid+16(FP), DX
	MOVQ	$0, R10
	MOVQ	$0, R8
	MOVQ	$0, R9
	MOVQ	fn+24(FP), R12
	MOVQ	arg+32(FP), R13
	MOVQ	$56, AX // SYS_clone
	SYSCALL
	CMPQ	AX, $0
	JEQ	child
	CMPQ	AX, $0xfffffffffffff001
	JLS	okOn
	MOVQ	$-1, pid+40(FP)
	NEGQ	AX
	MOVQ	AX, errno+48(FP)
	RET
okOn:
	MOVQ	AX, pid+40(FP)
	MOVQ	$0, errno+48(FP)
	RET
child:
	SUBQ	$16, SP
	MOVQ	R13, 0(SP)
	CALL	R12
	MOVQ	$1, DI
	MOVQ	$231, AX // SYS_exit_group
	SYSCALL
	RET

// func zygoteEntryPC() uintptr
TEXT ·zygoteEntryPC(SB),NOSPLIT,$0-8
	MOVQ	$·zygoteEntry(SB), AX
	MOVQ	AX, ret+0(FP)
	RET

// func initEntryPC() uintptr
TEXT ·initEntryPC(SB),NOSPLIT,$0-8
	MOVQ	$·initEntry(SB), AX
	MOVQ	AX, ret+0(FP)
	RET
