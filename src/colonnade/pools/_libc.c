/* colonnade.pools._libc: the two C library calls a worker makes at start-up.
 *
 * Built with the compiled modules (setup.py); the pure-Python build reaches the
 * same functions through ctypes (pools/sandbox.py). Why a module of its own:
 * ctypes costs a worker ~0.4 MiB of RSS (its Python package, _ctypes and libffi)
 * for two calls made once, prctl(PR_SET_PDEATHSIG) and glibc's malloc_trim.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif
#ifdef __GLIBC__
#include <malloc.h>
#endif

PyDoc_STRVAR(die_with_parent_doc,
"die_with_parent(signum)\n--\n\n"
"Ask the kernel for signal signum when the parent process dies (Linux's\n"
"PR_SET_PDEATHSIG); False where the system has no such request.");

static PyObject *
die_with_parent(PyObject *module, PyObject *arg)
{
    long signum = PyLong_AsLong(arg);
    if (signum == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (signum < 0 || signum > 64) {
        PyErr_Format(PyExc_ValueError, "signal number out of range: %ld", signum);
        return NULL;
    }
#ifdef __linux__
    if (prctl(PR_SET_PDEATHSIG, (unsigned long)signum, 0UL, 0UL, 0UL) != 0) {
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    Py_RETURN_TRUE;
#else
    Py_RETURN_FALSE;
#endif
}

PyDoc_STRVAR(malloc_trim_doc,
"malloc_trim()\n--\n\n"
"Give the C heap's free pages back to the kernel (glibc's malloc_trim(0));\n"
"None where the C library is not glibc, else whether memory was released.");

static PyObject *
trim(PyObject *module, PyObject *Py_UNUSED(ignored))
{
#ifdef __GLIBC__
    int released;
    Py_BEGIN_ALLOW_THREADS
    released = malloc_trim(0);
    Py_END_ALLOW_THREADS
    return PyBool_FromLong(released);
#else
    Py_RETURN_NONE;
#endif
}

static PyMethodDef methods[] = {
    {"die_with_parent", die_with_parent, METH_O, die_with_parent_doc},
    {"malloc_trim", trim, METH_NOARGS, malloc_trim_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef_Slot slots[] = {
    {0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "colonnade.pools._libc",
    .m_doc = "prctl(PR_SET_PDEATHSIG) and malloc_trim for a worker, without ctypes.",
    .m_size = 0,
    .m_methods = methods,
    .m_slots = slots,
};

PyMODINIT_FUNC
PyInit__libc(void)
{
    return PyModuleDef_Init(&module);
}
