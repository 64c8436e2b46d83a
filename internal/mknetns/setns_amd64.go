package mknetns

// sysSetns is setns(2)'s number, which the syscall package lacks here.
const sysSetns = 308
