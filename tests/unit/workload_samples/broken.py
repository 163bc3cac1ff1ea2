raise RuntimeError("this workload module is broken on purpose")
