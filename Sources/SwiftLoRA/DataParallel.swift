// MPI's world communicator is the process group data-parallel training runs over.
import LoRAMPI
import LoRATraining

extension MPICommunicator: ProcessGroup {}
