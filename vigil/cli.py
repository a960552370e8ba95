"""placeholder"""
def main():
    print("vigil")
