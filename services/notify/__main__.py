from services.notify.main import run

run()
